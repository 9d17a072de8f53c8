/*
 * control.c - /__control?key=value&...: change the fault settings at run
 * time. Only loopback (and unix socket) peers may use it. The keys are those
 * of the command line flags, with '_' or '-'; reset=1 first puts every
 * fault back to off and the counters to zero, then applies the other keys.
 * All keys are checked before any takes effect: one bad key, no change.
 */
#include <stdio.h>
#include <string.h>

#include "loadtest/backend/backend.h"

#define CTL_KEY_MAX   32
#define CTL_VALUE_MAX 128

struct ctl_edit {
    const char *query;
    size_t len;
    char err[200];
};

static int bk_ctl_hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into dst, '+' as space; -1 when malformed or too long. */
static int bk_ctl_decode(const char *s, size_t n, char *dst, size_t cap)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];

        if (ch == '%') {
            if (i + 2 >= n || bk_ctl_hex(s[i + 1]) < 0 || bk_ctl_hex(s[i + 2]) < 0)
                return -1;
            ch = bk_ctl_hex(s[i + 1]) * 16 + bk_ctl_hex(s[i + 2]);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch == '\0' || k + 1 >= cap)
            return -1;
        dst[k++] = (char)ch;
    }
    dst[k] = '\0';
    return 0;
}

/* Split pair p[0..n) ("key=value") into decoded key and value. */
static int bk_ctl_pair(const char *p, size_t n, char *key, char *value)
{
    const char *eq = memchr(p, '=', n);
    size_t klen = eq ? (size_t)(eq - p) : n;

    if (bk_ctl_decode(p, klen, key, CTL_KEY_MAX) == -1)
        return -1;
    if (bk_ctl_decode(eq ? eq + 1 : p + n, eq ? n - klen - 1 : 0, value, CTL_VALUE_MAX) == -1)
        return -1;
    for (char *k = key; *k; k++)
        if (*k == '-')
            *k = '_';
    return 0;
}

/* Apply the pairs whose key is (want_reset) or is not (!want_reset) "reset". */
static int bk_ctl_pass(struct ctl_edit *e, struct bk_faults *f, bool *reset, bool want_reset)
{
    size_t i = 0;

    while (i < e->len) {
        const char *amp = memchr(e->query + i, '&', e->len - i);
        size_t end = amp ? (size_t)(amp - e->query) : e->len;
        char key[CTL_KEY_MAX], value[CTL_VALUE_MAX];

        if (end > i && bk_ctl_pair(e->query + i, end - i, key, value) == -1) {
            snprintf(e->err, sizeof(e->err), "malformed query");
            return -1;
        }
        if (end > i && (strcmp(key, "reset") == 0) == want_reset) {
            if (!want_reset && bk_fault_set(f, key, value, e->err, sizeof(e->err)) == -1)
                return -1;
            if (want_reset && strcmp(value, "0") != 0) {
                *reset = true;
                bk_fault_defaults(f);
            }
        }
        i = end + 1;
    }
    return 0;
}

static int bk_ctl_apply(struct bk_faults *f, bool *reset, void *arg)
{
    struct ctl_edit *e = arg;

    if (bk_ctl_pass(e, f, reset, true) == -1)
        return -1;
    return bk_ctl_pass(e, f, reset, false);
}

/* The message may quote the client's value: keep it valid inside a JSON string. */
static void bk_ctl_json_safe(char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

int bk_ctl_answer(struct bk_conn *c)
{
    struct ctl_edit e = {.query = c->req.target + c->x.route.query_off,
                         .len = c->x.route.query_len};
    struct bk_faults now;
    char body[1024];
    int n;

    if (!bk_lsn_is_loopback(&c->peer))
        return bk_resp_simple(c, 403, NULL);
    if (bk_srv_edit_faults(c->w->srv, bk_ctl_apply, &e, &now) == -1) {
        bk_ctl_json_safe(e.err);
        n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", e.err);
        return bk_resp_json(c, 400, body, (size_t)n);
    }
    n = bk_fault_json(&now, body, sizeof(body));
    return bk_resp_json(c, 200, body, (size_t)n);
}
