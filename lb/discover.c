/*
 * discover.c - the policy of discovery (see discover.h).
 */
#include "lb/discover.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *disc_err_name(enum disc_err e)
{
    static const char *const names[DISC_E_COUNT] = {"timeout", "servfail", "nxdomain", "empty",
                                                    "other"};
    return (unsigned)e < DISC_E_COUNT ? names[e] : "other";
}

static int entry_cmp(const void *pa, const void *pb)
{
    const struct disc_entry *a = pa, *b = pb;
    if (a->family != b->family)
        return a->family == AF_INET ? -1 : 1;
    int c = memcmp(a->ip, b->ip, a->family == AF_INET ? 4 : 16);
    if (c)
        return c;
    return (int)a->port - (int)b->port;
}

static bool same_place(const struct disc_entry *a, const struct disc_entry *b)
{
    return entry_cmp(a, b) == 0;
}

static bool same_set(const struct disc_entry *a, int na, const struct disc_entry *b, int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (!same_place(&a[i], &b[i]) || a[i].weight != b[i].weight)
            return false;
    return true;
}

/*
 * ENTRIES sorted, duplicates merged, cut to DISC_MAX_ENTRIES; for a single
 * source, the one address: the one in use if the answer has it, else the
 * lowest. A malloc'd array in *out (NULL when N is 0); -1 when out of memory.
 */
static int normalise(const struct disc_state *s, const struct disc_rules *r,
                     const struct disc_entry *entries, int n, struct disc_entry **out)
{
    *out = NULL;
    if (n <= 0)
        return 0;
    struct disc_entry *e = malloc((size_t)n * sizeof(*e));
    if (!e)
        return -1;
    memcpy(e, entries, (size_t)n * sizeof(*e));
    for (int i = 0; i < n; i++) { /* bytes past the address do not count */
        if (e[i].family == AF_INET)
            memset(e[i].ip + 4, 0, 12);
    }
    qsort(e, (size_t)n, sizeof(*e), entry_cmp);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k && same_place(&e[k - 1], &e[i])) {
            uint64_t w = (uint64_t)e[k - 1].weight + e[i].weight;
            e[k - 1].weight = w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
            continue;
        }
        e[k++] = e[i];
    }
    if (k > DISC_MAX_ENTRIES)
        k = DISC_MAX_ENTRIES;
    if (r->single && k > 1) {
        int keep = 0;
        for (int i = 0; s->nset == 1 && i < k; i++)
            if (same_place(&e[i], &s->set[0]))
                keep = i;
        e[0] = e[keep];
        k = 1;
    }
    *out = e;
    return k;
}

static void prune(struct disc_state *s, int64_t now)
{
    int drop = 0;
    while (drop < s->nchanges && now - s->changes[drop] >= DISC_WINDOW_MS)
        drop++;
    if (drop) {
        memmove(s->changes, s->changes + drop,
                (size_t)(s->nchanges - drop) * sizeof(s->changes[0]));
        s->nchanges -= drop;
    }
}

static void record_change(struct disc_state *s, int64_t now)
{
    if (s->nchanges == DISC_MAX_CHANGES) {
        memmove(s->changes, s->changes + 1, (DISC_MAX_CHANGES - 1) * sizeof(s->changes[0]));
        s->nchanges--;
    }
    s->changes[s->nchanges++] = now;
}

static void drop_held(struct disc_state *s)
{
    free(s->held);
    s->held = NULL;
    s->nheld = 0;
    s->holding = false;
}

/* E (owned) becomes the set in use. */
static void set_replace(struct disc_state *s, struct disc_entry *e, int n, int64_t now)
{
    free(s->set);
    s->set = e;
    s->nset = n;
    s->updates++;
    s->last_change_ms = now;
}

static bool limited(struct disc_state *s, const struct disc_rules *r, int64_t now)
{
    prune(s, now);
    return r->max_changes && (uint32_t)s->nchanges >= r->max_changes;
}

enum disc_outcome disc_on_answer(struct disc_state *s, const struct disc_rules *r,
                                 const struct disc_entry *entries, int n, uint32_t ttl_s,
                                 int64_t now)
{
    struct disc_entry *e;
    int k = normalise(s, r, entries, n, &e);
    if (k < 0) {
        snprintf(s->last_error, sizeof(s->last_error), "out of memory reading an answer");
        s->last_error_ms = now;
        s->errors[DISC_E_OTHER]++;
        return DISC_KEPT;
    }
    s->answers++;
    s->last_answer_ms = now;
    s->ttl_s = ttl_s;
    s->nx_since = 0;
    s->failing_since = 0;
    if (!s->have_set || !s->nset) { /* a first answer, or one for an empty pool: at once,
                                     * not counted (holding would only keep it empty) */
        s->have_set = true;
        drop_held(s);
        if (same_set(s->set, s->nset, e, k)) {
            free(e);
            return DISC_SAME;
        }
        set_replace(s, e, k, now);
        return DISC_CHANGED;
    }
    if (same_set(s->set, s->nset, e, k)) {
        free(e);
        drop_held(s);
        return DISC_SAME;
    }
    if (limited(s, r, now)) {
        if (!s->holding || !same_set(s->held, s->nheld, e, k))
            s->damped++;
        free(s->held);
        s->held = e;
        s->nheld = k;
        s->holding = true;
        return DISC_HELD;
    }
    drop_held(s);
    set_replace(s, e, k, now);
    record_change(s, now);
    return DISC_CHANGED;
}

enum disc_outcome disc_on_error(struct disc_state *s, const struct disc_rules *r,
                                enum disc_err kind, const char *detail, int64_t now)
{
    if ((unsigned)kind >= DISC_E_COUNT)
        kind = DISC_E_OTHER;
    s->errors[kind]++;
    s->last_error_ms = now;
    snprintf(s->last_error, sizeof(s->last_error), "%s%s%s", disc_err_name(kind),
             detail && *detail ? ": " : "", detail ? detail : "");
    if (!s->failing_since)
        s->failing_since = now;
    if (kind == DISC_E_NXDOMAIN && !s->nx_since)
        s->nx_since = now;
    else if (kind == DISC_E_EMPTY)
        s->nx_since = 0; /* the name exists: NXDOMAIN's clock starts again */
    enum disc_outcome o = disc_tick(s, r, now);
    return o == DISC_SAME ? DISC_KEPT : o;
}

enum disc_outcome disc_tick(struct disc_state *s, const struct disc_rules *r, int64_t now)
{
    if (s->nx_since && s->nset && now - s->nx_since >= (int64_t)r->keep_stale_ms) {
        drop_held(s);
        set_replace(s, NULL, 0, now); /* not counted against the limit: rare, and delayed already */
        return DISC_EMPTIED;
    }
    if (s->holding && !limited(s, r, now)) {
        struct disc_entry *e = s->held;
        int n = s->nheld;
        s->held = NULL;
        s->nheld = 0;
        s->holding = false;
        set_replace(s, e, n, now);
        record_change(s, now);
        return DISC_CHANGED;
    }
    return DISC_SAME;
}

int64_t disc_next_tick(const struct disc_state *s, const struct disc_rules *r)
{
    int64_t t = 0;
    if (s->nx_since && s->nset)
        t = s->nx_since + r->keep_stale_ms;
    if (s->holding && s->nchanges) {
        int64_t free_at = s->changes[0] + DISC_WINDOW_MS;
        if (!t || free_at < t)
            t = free_at;
    }
    return t;
}

uint32_t disc_query_interval(const struct disc_state *s, const struct disc_rules *r, bool failed)
{
    uint32_t ms = r->interval_ms;
    if (!ms) {
        uint64_t ttl = s->answers ? (uint64_t)s->ttl_s * 1000 : 0;
        ms = ttl < DISC_TTL_MIN_MS   ? DISC_TTL_MIN_MS
             : ttl > DISC_TTL_MAX_MS ? DISC_TTL_MAX_MS
                                     : (uint32_t)ttl;
    }
    return failed && ms > DISC_FAIL_RETRY_MS ? DISC_FAIL_RETRY_MS : ms;
}

bool disc_log_allow(struct disc_state *s, int64_t now, uint32_t *suppressed)
{
    if (s->log_next_ms && now < s->log_next_ms) {
        s->log_suppressed++;
        return false;
    }
    *suppressed = s->log_suppressed;
    s->log_suppressed = 0;
    s->log_next_ms = now + DISC_LOG_EVERY_MS;
    return true;
}

void disc_renamed(struct disc_state *s)
{
    s->have_set = false;
    s->nx_since = 0;
    s->failing_since = 0;
    drop_held(s);
}

bool disc_is_stale(const struct disc_state *s)
{
    return s->failing_since && s->nset > 0;
}

void disc_state_free(struct disc_state *s)
{
    free(s->set);
    free(s->held);
    memset(s, 0, sizeof(*s));
}

int disc_entry_text(const struct disc_entry *e, uint16_t port, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(e->family, e->ip, ip, sizeof(ip)))
        snprintf(ip, sizeof(ip), "?");
    return snprintf(out, cap, e->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)port);
}

/* The socket address of E at PORT into A (its text left alone). */
static void entry_addr(const struct disc_entry *e, uint16_t port, struct cfg_addr *a)
{
    memset(&a->sa, 0, sizeof(a->sa));
    if (e->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, e->ip, 4);
        a->len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, e->ip, 16);
        a->len = sizeof(*sin6);
    }
}

/* Zone and region: the template's (or the file's) when given, else by address block. */
static void place(const struct cfg *cfg, const struct cfg_backend *given, struct cfg_backend *b)
{
    const char *zone = "", *region = "";
    cfg_zone_of(cfg, (const struct sockaddr *)&b->addr.sa, &zone, &region);
    b->zone = given->zone && given->zone[0] ? given->zone : zone;
    b->region = given->region && given->region[0] ? given->region : region;
}

int disc_backends(const struct cfg *cfg, const struct cfg_pool *p, const struct disc_entry *entries,
                  int n, struct cfg_backend *out, char (*names)[CFG_NAME_MAX])
{
    const struct cfg_discover *d = &p->discover;
    uint32_t top = 0;
    for (int i = 0; i < n; i++)
        top = entries[i].weight > top ? entries[i].weight : top;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const struct disc_entry *e = &entries[i];
        uint16_t port = e->port ? e->port : (uint16_t)d->port;
        struct cfg_backend *b = &out[k];
        bool taken = false;
        memset(b, 0, sizeof(*b));
        entry_addr(e, port, &b->addr);
        for (int j = 0; j < p->nbackends && !taken; j++)
            taken = cfg_addr_equal(&p->backends[j].addr, &b->addr);
        if (taken || !port)
            continue; /* the file's own backend at that address wins */
        disc_entry_text(e, port, names[k], CFG_NAME_MAX);
        snprintf(b->addr.text, sizeof(b->addr.text), "%s", names[k]);
        b->name = names[k];
        b->weight = d->tmpl.weight;
        if (d->type == CFG_DNS_SRV) {
            uint64_t w = top > 1000 ? ((uint64_t)e->weight * 1000 + top / 2) / top : e->weight;
            b->weight = w < 1 ? 1 : (uint32_t)w;
        }
        b->state = d->tmpl.state;
        b->discovered = true;
        b->line = d->line;
        place(cfg, &d->tmpl, b);
        k++;
    }
    return k;
}

void disc_named_backend(const struct cfg *cfg, const struct cfg_backend *b,
                        const struct disc_entry *e, struct cfg_backend *out)
{
    *out = *b;
    entry_addr(e, b->port, &out->addr); /* the text stays "NAME:PORT" */
    place(cfg, b, out);
}
