/*
 * cfg_value.c - the value grammars of the config file: durations, addresses,
 * HTTP status sets
 *
 * (and address blocks, "10.0.0.0/8").
 *
 * These are pure functions over a string (no DNS, no file access), shared by
 * the loader and by anyone else who reads such values (the admin API). On
 * failure they say why in a short static phrase the loader puts into its
 * error message.
 */
#include "config/cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

/* The longest duration we accept: it keeps every millisecond value within
 * an int32, so timer arithmetic elsewhere cannot overflow (~24.8 days). */
#define CFG_DURATION_MAX_MS INT32_MAX

#define CFG_FRAC_DIGITS_MAX 9

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return -1;
}

/* Milliseconds per unit; 0 when UNIT is not one we know. */
static uint64_t duration_unit_ms(const char *unit)
{
    if (strcmp(unit, "ms") == 0)
        return 1;
    if (strcmp(unit, "s") == 0)
        return 1000;
    if (strcmp(unit, "m") == 0)
        return 60 * 1000;
    if (strcmp(unit, "h") == 0)
        return 60 * 60 * 1000;
    return 0;
}

/*
 * A duration is a decimal number and a unit: "250ms", "2s", "1.5s", "5m",
 * "1h". It must come to a whole number of milliseconds. The arithmetic is
 * done in integers so "0.1s" is exactly 100ms.
 */
int cfg_parse_duration_why(const char *s, uint32_t *ms, const char **why)
{
    uint64_t whole = 0, frac = 0, scale = 1, unit, total;
    const char *p = s;

    if (!s || !*s)
        return fail(why, "empty (use a unit: 250ms, 2s, 5m, 1h)");
    if (*p == '-')
        return fail(why, "durations cannot be negative");
    if (!isdigit((unsigned char)*p))
        return fail(why, "not a number followed by a unit (e.g. 250ms, 2s, 5m, 1h)");
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > CFG_DURATION_MAX_MS)
            return fail(why, "too long (at most 24 days)");
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return fail(why, "a decimal point needs digits after it");
        for (int n = 0; isdigit((unsigned char)*p); p++, n++) {
            if (n < CFG_FRAC_DIGITS_MAX) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
            } else if (*p != '0') {
                return fail(why, "finer than a millisecond");
            }
        }
    }
    if (!*p)
        return fail(why, "missing unit (use a unit: 250ms, 2s, 5m, 1h)");
    unit = duration_unit_ms(p);
    if (unit == 0)
        return fail(why, "unknown unit (use ms, s, m or h)");
    if ((frac * unit) % scale != 0)
        return fail(why, "finer than a millisecond");
    total = whole * unit + frac * unit / scale;
    if (total > CFG_DURATION_MAX_MS)
        return fail(why, "too long (at most 24 days)");
    if (ms)
        *ms = (uint32_t)total;
    return 0;
}

int cfg_parse_duration(const char *s, uint32_t *ms)
{
    return cfg_parse_duration_why(s, ms, NULL);
}

/* "1".."65535", digits only. */
static int parse_port(const char *s, uint16_t *port, const char **why)
{
    unsigned long v = 0;

    if (!*s)
        return fail(why, "missing port (write HOST:PORT)");
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return fail(why, "port is not a number");
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return fail(why, "port out of range (1-65535)");
    }
    if (v == 0)
        return fail(why, "port out of range (1-65535)");
    *port = (uint16_t)v;
    return 0;
}

static int parse_unix(const char *path, struct cfg_addr *out, const char **why)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
    size_t len = strlen(path);

    if (len == 0)
        return fail(why, "empty unix socket path");
    if (len >= sizeof(un->sun_path))
        return fail(why, "unix socket path too long (at most 107 bytes)");
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, len + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    return 0;
}

/* HOST of "HOST:PORT": numeric IPv4, "localhost" or "*". No DNS: a config
 * that depends on the resolver at reload time is a config that can fail
 * at 3 a.m. */
static int parse_ipv4(const char *host, uint16_t port, struct cfg_addr *out, const char **why)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;

    if (!*host)
        return fail(why, "missing host (use * for all addresses)");
    if (strcmp(host, "*") == 0)
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return fail(why, "host must be a numeric IP address, [IPv6], localhost or *");
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    out->len = sizeof(*sin);
    return 0;
}

/* getaddrinfo rather than inet_pton so that scoped link-local addresses
 * ("fe80::1%eth0") work; AI_NUMERICHOST keeps it away from DNS. */
static int parse_ipv6(const char *host, uint16_t port, struct cfg_addr *out, const char **why)
{
    struct addrinfo hints, *res = NULL;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET6;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (!*host || getaddrinfo(host, NULL, &hints, &res) != 0)
        return fail(why, "not a numeric IPv6 address");
    if (res->ai_addrlen > sizeof(out->sa)) {
        freeaddrinfo(res);
        return fail(why, "not a numeric IPv6 address");
    }
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    sin6->sin6_port = htons(port);
    return 0;
}

/* Splits "[v6]:PORT" or "HOST:PORT" (in BUF, a writable copy) into host
 * and port strings. */
static int split_host_port(char *buf, char **host, char **port, bool *v6, const char **why)
{
    char *colon;

    *v6 = buf[0] == '[';
    if (*v6) {
        char *close = strchr(buf, ']');
        if (!close)
            return fail(why, "missing ']' after the IPv6 address");
        if (close[1] != ':')
            return fail(why, "missing port (write [IPv6]:PORT)");
        *close = '\0';
        *host = buf + 1;
        *port = close + 2;
        return 0;
    }
    colon = strrchr(buf, ':');
    if (!colon)
        return fail(why, "missing port (write HOST:PORT)");
    *colon = '\0';
    if (strchr(buf, ':'))
        return fail(why, "IPv6 addresses need brackets: [::1]:PORT");
    *host = buf;
    *port = colon + 1;
    return 0;
}

/*
 * "HOST:PORT" (numeric IPv4, "localhost" = 127.0.0.1, "*" = 0.0.0.0),
 * "[v6]:PORT" or "unix:/path". OUT is cleared first, so two equal addresses
 * compare equal with memcmp over sa.
 */
int cfg_parse_addr_why(const char *s, struct cfg_addr *out, const char **why)
{
    char buf[sizeof(out->text)];
    char *host, *port_text;
    uint16_t port;
    bool v6;
    size_t len;

    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return fail(why, "empty address");
    len = strlen(s);
    if (len >= sizeof(out->text))
        return fail(why, "address too long");
    memcpy(out->text, s, len + 1);
    if (strncmp(s, "unix:", 5) == 0)
        return parse_unix(s + 5, out, why);
    memcpy(buf, s, len + 1);
    if (split_host_port(buf, &host, &port_text, &v6, why) == -1)
        return -1;
    if (parse_port(port_text, &port, why) == -1)
        return -1;
    return v6 ? parse_ipv6(host, port, out, why) : parse_ipv4(host, port, out, why);
}

int cfg_parse_addr(const char *s, struct cfg_addr *out)
{
    return cfg_parse_addr_why(s, out, NULL);
}

static void status_add_range(struct cfg_status_set *set, unsigned lo, unsigned hi)
{
    for (unsigned c = lo; c <= hi; c++)
        set->bits[c >> 6] |= (uint64_t)1 << (c & 63);
}

/* A code of 1 to 3 digits at *P; advances *P. Returns -1 when there is no
 * number there, or a value (possibly out of range) otherwise. */
static int status_number(const char **p)
{
    int v = 0, n = 0;

    while (isdigit((unsigned char)**p)) {
        if (++n > 3)
            return 1000; /* out of range whatever follows */
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return n ? v : -1;
}

static bool status_is_valid(int code)
{
    return code >= 100 && code <= 599;
}

/* One item of a status list at *P: "503", "500-599" or "5xx". */
static int status_item(const char **p, struct cfg_status_set *set, const char **why)
{
    const char *bad = "not a status list (write e.g. 500-599, 502,503 or 5xx)";
    int lo, hi;

    if ((*p)[0] >= '1' && (*p)[0] <= '5' && (*p)[1] == 'x' && (*p)[2] == 'x') {
        lo = ((*p)[0] - '0') * 100;
        *p += 3;
        status_add_range(set, (unsigned)lo, (unsigned)lo + 99);
        return 0;
    }
    lo = status_number(p);
    if (lo == -1)
        return fail(why, bad);
    hi = lo;
    if (**p == '-') {
        (*p)++;
        hi = status_number(p);
        if (hi == -1)
            return fail(why, bad);
    }
    if (!status_is_valid(lo) || !status_is_valid(hi))
        return fail(why, "status codes must be between 100 and 599");
    if (lo > hi)
        return fail(why, "range is backwards (write the low code first)");
    status_add_range(set, (unsigned)lo, (unsigned)hi);
    return 0;
}

/*
 * A comma-separated list of items, each a code ("503"), a range
 * ("500-599") or a class ("5xx"); spaces around items are allowed.
 */
int cfg_parse_status_set_why(const char *s, struct cfg_status_set *out, const char **why)
{
    struct cfg_status_set set;
    const char *p = s;

    memset(&set, 0, sizeof(set));
    if (!s)
        return fail(why, "empty status list");
    for (;;) {
        while (*p == ' ')
            p++;
        if (!*p)
            return fail(why, "empty status list or item");
        if (status_item(&p, &set, why) == -1)
            return -1;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (*p != ',')
            return fail(why, "not a status list (write e.g. 500-599, 502,503 or 5xx)");
        p++;
    }
    if (out)
        *out = set;
    return 0;
}

int cfg_parse_status_set(const char *s, struct cfg_status_set *out)
{
    return cfg_parse_status_set_why(s, out, NULL);
}

/*
 * An address block: "10.0.0.0/8", "2001:db8::/32", or one address ("10.1.2.3",
 * "::1": all bits). Host bits set below the prefix are refused: "10.1.0.0/8"
 * is more likely a typo than a wish.
 */
int cfg_parse_cidr_why(const char *s, struct cfg_cidr *out, const char **why)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash;
    size_t alen;
    unsigned bits, max;

    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return fail(why, "empty (use an address block such as \"10.0.0.0/8\")");
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return fail(why, "not an IPv4 or IPv6 address block");
    memcpy(buf, s, alen);
    buf[alen] = 0;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return fail(why, "not an IPv4 or IPv6 address block");
    }
    bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3)
            return fail(why, "bad prefix length");
        bits = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return fail(why, "bad prefix length");
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max)
            return fail(why, "prefix length too long for the address");
    }
    out->bits = (uint8_t)bits;
    for (unsigned i = bits; i < max; i++)
        if (out->addr[i / 8] & (0x80u >> (i % 8)))
            return fail(why, "host bits set below the prefix length");
    return 0;
}

bool cfg_cidr_contains(const struct cfg_cidr *c, int family, const void *addr)
{
    const uint8_t *a = addr;
    unsigned full = c->bits / 8, rest = c->bits % 8;

    if (family != c->family)
        return false;
    if (memcmp(a, c->addr, full) != 0)
        return false;
    return !rest || ((a[full] ^ c->addr[full]) & (0xffu << (8 - rest)) & 0xffu) == 0;
}
