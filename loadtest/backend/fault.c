/*
 * fault.c - the fault settings: one parser for the command line flags and
 * the /__control keys, the JSON that reports them, and the latency draw.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "loadtest/backend/backend.h"

#define FAULT_Z99 2.3263478740408408 /* standard normal quantile at 0.99 */

struct fault_key {
    const char *name;
    int (*set)(struct bk_faults *f, const char *v);
    const char *expect; /* for the error message */
};

void bk_fault_defaults(struct bk_faults *f)
{
    memset(f, 0, sizeof(*f));
    f->error_status = 500;
    f->health = 200;
}

int bk_fault_duration(const char *s, double *ms)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || errno != 0 || !(v >= 0)) /* !(v >= 0) also rejects NaN */
        return -1;
    if (strcmp(end, "s") == 0)
        v *= 1000;
    else if (strcmp(end, "us") == 0)
        v /= 1000;
    else if (*end != '\0' && strcmp(end, "ms") != 0)
        return -1;
    if (v > BK_MS_MAX)
        return -1;
    *ms = v;
    return 0;
}

static int bk_fault_rate(const char *s, double *rate)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !(v >= 0 && v <= 1))
        return -1;
    *rate = v;
    return 0;
}

static int bk_fault_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static int bk_fault_bool(const char *s, bool *out)
{
    if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "on") == 0)
        *out = true;
    else if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0 || strcasecmp(s, "off") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

static int bk_fault_status(const char *s, int *out)
{
    uint64_t v;

    if (bk_fault_uint(s, 599, &v) == -1 || v < 200)
        return -1;
    *out = (int)v;
    return 0;
}

/* "0", "50ms", or "lognormal:P50:P99" with 0 < P50 <= P99. */
static int bk_fault_set_latency(struct bk_faults *f, const char *v)
{
    char p50[32];
    const char *colon;
    double a, b;

    if (strncmp(v, "lognormal:", 10) != 0) {
        if (bk_fault_duration(v, &a) == -1)
            return -1;
        f->lat_kind = a > 0 ? FAULT_LAT_FIXED : FAULT_LAT_NONE;
        f->lat_ms = a;
        return 0;
    }
    v += 10;
    colon = strchr(v, ':');
    if (colon == NULL || (size_t)(colon - v) >= sizeof(p50))
        return -1;
    memcpy(p50, v, (size_t)(colon - v));
    p50[colon - v] = '\0';
    if (bk_fault_duration(p50, &a) == -1 || bk_fault_duration(colon + 1, &b) == -1 || !(a > 0) ||
        b < a)
        return -1;
    f->lat_kind = FAULT_LAT_LOGNORMAL;
    f->lat_ms = a;
    f->lat_p99_ms = b;
    f->lat_mu = log(a);
    f->lat_sigma = (log(b) - log(a)) / FAULT_Z99;
    return 0;
}

static int bk_fault_set_error_rate(struct bk_faults *f, const char *v)
{
    return bk_fault_rate(v, &f->error_rate);
}

static int bk_fault_set_error_status(struct bk_faults *f, const char *v)
{
    return bk_fault_status(v, &f->error_status);
}

static int bk_fault_set_reset_rate(struct bk_faults *f, const char *v)
{
    return bk_fault_rate(v, &f->reset_rate);
}

static int bk_fault_set_hang(struct bk_faults *f, const char *v)
{
    return bk_fault_bool(v, &f->hang);
}

static int bk_fault_set_refuse(struct bk_faults *f, const char *v)
{
    return bk_fault_bool(v, &f->refuse);
}

static int bk_fault_set_slow_body(struct bk_faults *f, const char *v)
{
    return bk_fault_uint(v, 1ULL << 40, &f->slow_body);
}

static int bk_fault_set_health(struct bk_faults *f, const char *v)
{
    return bk_fault_status(v, &f->health);
}

static int bk_fault_set_health_delay(struct bk_faults *f, const char *v)
{
    return bk_fault_duration(v, &f->health_delay_ms);
}

static int bk_fault_set_close_after(struct bk_faults *f, const char *v)
{
    uint64_t n;

    if (bk_fault_uint(v, UINT32_MAX, &n) == -1)
        return -1;
    f->close_after = (uint32_t)n;
    return 0;
}

static int bk_fault_set_expect(struct bk_faults *f, const char *v)
{
    if (strcmp(v, "continue") == 0)
        f->expect_ignore = false;
    else if (strcmp(v, "ignore") == 0)
        f->expect_ignore = true;
    else
        return -1;
    return 0;
}

static const struct fault_key bk_fault_keys[] = {
    {"latency", bk_fault_set_latency, "a duration (50ms) or lognormal:P50:P99"},
    {"error_rate", bk_fault_set_error_rate, "a fraction 0..1"},
    {"error_status", bk_fault_set_error_status, "a status 200..599"},
    {"reset_rate", bk_fault_set_reset_rate, "a fraction 0..1"},
    {"hang", bk_fault_set_hang, "0 or 1"},
    {"refuse", bk_fault_set_refuse, "0 or 1"},
    {"slow_body", bk_fault_set_slow_body, "bytes per second, 0 = off"},
    {"health", bk_fault_set_health, "a status 200..599"},
    {"health_delay", bk_fault_set_health_delay, "a duration (ms)"},
    {"close_after", bk_fault_set_close_after, "a request count, 0 = off"},
    {"expect", bk_fault_set_expect, "continue or ignore"},
};

static const struct fault_key *bk_fault_find(const char *key)
{
    for (size_t i = 0; i < sizeof(bk_fault_keys) / sizeof(bk_fault_keys[0]); i++)
        if (strcmp(bk_fault_keys[i].name, key) == 0)
            return &bk_fault_keys[i];
    return NULL;
}

int bk_fault_set(struct bk_faults *f, const char *key, const char *value, char *err, size_t errlen)
{
    const struct fault_key *k = bk_fault_find(key);

    if (k == NULL) {
        snprintf(err, errlen, "unknown fault %s", key);
        return -1;
    }
    if (k->set(f, value) == -1) {
        snprintf(err, errlen, "bad %s \"%.64s\": expected %s", key, value, k->expect);
        return -1;
    }
    return 0;
}

bool bk_fault_is_bool(const char *key)
{
    return strcmp(key, "hang") == 0 || strcmp(key, "refuse") == 0;
}

static void bk_fault_latency_text(const struct bk_faults *f, char *dst, size_t cap)
{
    if (f->lat_kind == FAULT_LAT_LOGNORMAL)
        snprintf(dst, cap, "lognormal:%.15gms:%.15gms", f->lat_ms, f->lat_p99_ms);
    else
        snprintf(dst, cap, "%.15gms", f->lat_kind == FAULT_LAT_FIXED ? f->lat_ms : 0.0);
}

int bk_fault_json(const struct bk_faults *f, char *dst, size_t cap)
{
    char lat[96];

    bk_fault_latency_text(f, lat, sizeof(lat));
    return snprintf(dst, cap,
                    "{\"latency\":\"%s\",\"error_rate\":%.15g,\"error_status\":%d,"
                    "\"reset_rate\":%.15g,\"hang\":%d,\"refuse\":%d,\"slow_body\":%llu,"
                    "\"health\":%d,\"health_delay\":%.15g,\"close_after\":%u,"
                    "\"expect\":\"%s\"}\n",
                    lat, f->error_rate, f->error_status, f->reset_rate, f->hang, f->refuse,
                    (unsigned long long)f->slow_body, f->health, f->health_delay_ms, f->close_after,
                    f->expect_ignore ? "ignore" : "continue");
}

double bk_fault_latency_ms(const struct bk_faults *f, struct bk_rng *r)
{
    double ms;

    switch (f->lat_kind) {
    case FAULT_LAT_FIXED:
        return f->lat_ms;
    case FAULT_LAT_LOGNORMAL:
        ms = exp(f->lat_mu + f->lat_sigma * bk_rng_normal(r));
        return ms < BK_MS_MAX ? ms : BK_MS_MAX;
    default:
        return 0;
    }
}
