/*
 * names.c - keeping the names of the configuration resolved (see names.h).
 *
 * A source asks its name in rounds. A round is one question, or for SRV one
 * question and then one per target whose address the additional section did
 * not give; when its last answer is in, the round's outcome goes to the
 * policy and the next round is scheduled. The channel is replaced on every
 * reconfiguration: freeing the old one cancels its rounds before their
 * sources go.
 */
#include "lb/names.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lb/core/clock.h"
#include "lb/core/container.h"
#include "lb/core/events.h"
#include "lb/core/log.h"
#include "lb/dns.h"

#define NAMES_LOG_ADDRS 8 /* addresses named in a log line; the rest are counted */

/* Defaults of a named backend's source (it has no discover group). */
#define NAMED_KEEP_STALE_MS 300000
#define NAMED_MAX_CHANGES   10

struct names_round;

struct names_src {
    struct names *n;
    char pool[CFG_NAME_MAX];
    char backend[CFG_NAME_MAX]; /* a named backend's name; "" for the pool's discover */
    char name[DNS_NAME_MAX];    /* asked */
    enum cfg_dns_type type;     /* named backends: A, then AAAA when there is no A record */
    uint16_t port;              /* the port written (A, AAAA, a named backend's): for logs */
    struct disc_rules rules;
    struct disc_state st;
    ev_timer query;            /* the next round */
    ev_timer tick;             /* the policy's next deadline (damping, keep_stale) */
    struct names_round *round; /* in flight, or NULL */
    bool answered;             /* a round has ended since it was configured */
    int64_t hold_log_next;     /* damping is logged once a minute */
};

struct names {
    struct ev_loop *loop;
    struct dns *dns;
    char dns_error[160]; /* why there is no channel */
    struct names_src **srcs;
    int nsrcs;
    ev_timer apply; /* runs on_change once for changes close together */
    bool dirty;     /* sets changed since on_change last ran */
    void (*on_change)(void *arg);
    void *arg;
    uint64_t apply_failed;
    ev_timer wait; /* names_wait_first's deadline */
};

struct names_round {
    struct names_src *src;
    int pending; /* questions not answered yet */
    bool cancelled;
    struct disc_entry *e;
    int n, cap;
    uint32_t ttl;
    bool any_ttl;
    bool failed;
    enum disc_err kind;
    char detail[DISC_ERROR_TEXT_MAX];
};

struct names_q {
    struct names_round *round;
    char name[DNS_NAME_MAX];
    enum dns_type type;
    bool top;      /* the round's own question, not a SRV target's */
    bool fallback; /* an A question: ask AAAA when there is no A record */
    uint16_t port; /* a SRV target's */
    uint32_t weight;
};

static void src_schedule(struct names_src *s, uint32_t ms);
static void src_finish(struct names_src *s, struct names_round *r);

/* ---- questions ---------------------------------------------------------- */

static void round_fail(struct names_round *r, enum disc_err kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void round_fail(struct names_round *r, enum disc_err kind, const char *fmt, ...)
{
    if (r->failed)
        return; /* the first failure says it */
    r->failed = true;
    r->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
    va_end(ap);
}

static void round_add(struct names_round *r, const struct dns_addr *a, uint16_t port,
                      uint32_t weight)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        if (cap > DISC_MAX_ENTRIES * 2)
            return; /* the policy keeps DISC_MAX_ENTRIES anyway */
        struct disc_entry *e = realloc(r->e, (size_t)cap * sizeof(*e));
        if (!e) {
            round_fail(r, DISC_E_OTHER, "out of memory");
            return;
        }
        r->e = e;
        r->cap = cap;
    }
    struct disc_entry *e = &r->e[r->n++];
    memset(e, 0, sizeof(*e));
    e->family = a->family;
    memcpy(e->ip, a->ip, a->family == AF_INET ? 4 : 16);
    e->port = port;
    e->weight = weight;
    if (!r->any_ttl || a->ttl < r->ttl)
        r->ttl = a->ttl;
    r->any_ttl = true;
}

static void on_answer(void *arg, const struct dns_result *res);

static void ask(struct names_round *r, const char *name, enum dns_type type, bool top,
                bool fallback, uint16_t port, uint32_t weight)
{
    struct names_q *q = calloc(1, sizeof(*q));
    struct dns *dns = r->src ? r->src->n->dns : NULL;
    if (!q || !dns || dns_query(dns, name, type, on_answer, q) == -1) {
        free(q);
        round_fail(r, DISC_E_OTHER, "%s", dns ? "out of memory" : "no resolver");
        return;
    }
    q->round = r;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->type = type;
    q->top = top;
    q->fallback = fallback;
    q->port = port;
    q->weight = weight;
    r->pending++;
}

static enum disc_err err_of(enum dns_status st)
{
    switch (st) {
    case DNS_TIMEOUT:
        return DISC_E_TIMEOUT;
    case DNS_SERVFAIL:
        return DISC_E_SERVFAIL;
    case DNS_NXDOMAIN:
        return DISC_E_NXDOMAIN;
    case DNS_NODATA:
        return DISC_E_EMPTY;
    default:
        return DISC_E_OTHER;
    }
}

static bool same_name(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    la -= la && a[la - 1] == '.';
    lb -= lb && b[lb - 1] == '.';
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* SRV records: the lowest priority only; targets' addresses from the
 * additional section when it has them, else asked. */
static void on_srv(struct names_round *r, const struct dns_result *res)
{
    int lowest = 65536;
    for (int i = 0; i < res->nsrvs; i++)
        lowest = res->srvs[i].priority < lowest ? res->srvs[i].priority : lowest;
    if (!r->any_ttl || res->ttl < r->ttl)
        r->ttl = res->ttl;
    r->any_ttl = true;
    for (int i = 0; i < res->nsrvs; i++) {
        const struct dns_srv *s = &res->srvs[i];
        bool found = false;
        if (s->priority != lowest || s->port == 0)
            continue;
        for (int j = 0; j < res->nextra; j++)
            if (same_name(res->extra[j].name, s->target)) {
                round_add(r, &res->extra[j].addr, s->port, s->weight);
                found = true;
            }
        if (!found)
            ask(r, s->target, DNS_T_A, false, true, s->port, s->weight);
    }
}

static void on_answer(void *arg, const struct dns_result *res)
{
    struct names_q *q = arg;
    struct names_round *r = q->round;
    r->pending--;
    if (res->status == DNS_CANCELLED) {
        r->cancelled = true;
    } else if (res->status == DNS_OK && q->type == DNS_T_SRV) {
        on_srv(r, res);
    } else if (res->status == DNS_OK) {
        for (int i = 0; i < res->naddrs; i++)
            round_add(r, &res->addrs[i], q->port, q->weight);
    } else if (res->status == DNS_NODATA && q->fallback) {
        ask(r, q->name, DNS_T_AAAA, q->top, false, q->port, q->weight);
    } else if (!q->top && (res->status == DNS_NXDOMAIN || res->status == DNS_NODATA)) {
        /* a SRV target without an address: the others still count */
        log_debug("discovery: pool %s: SRV target %s: %s", r->src ? r->src->pool : "?", q->name,
                  dns_status_name(res->status));
    } else {
        round_fail(r, err_of(res->status), "%s%s%s", q->top ? "" : q->name, q->top ? "" : ": ",
                   res->detail ? res->detail : dns_status_name(res->status));
    }
    free(q);
    if (r->pending > 0)
        return;
    if (r->cancelled || !r->src) {
        if (r->src)
            r->src->round = NULL;
        free(r->e);
        free(r);
        return;
    }
    src_finish(r->src, r);
}

static void src_start_round(struct names_src *s)
{
    struct names_round *r = calloc(1, sizeof(*r));
    if (!r) {
        src_schedule(s, DISC_FAIL_RETRY_MS);
        return;
    }
    r->src = s;
    s->round = r;
    if (s->backend[0])
        ask(r, s->name, DNS_T_A, true, true, 0, 0);
    else if (s->type == CFG_DNS_SRV)
        ask(r, s->name, DNS_T_SRV, true, false, 0, 0);
    else
        ask(r, s->name, s->type == CFG_DNS_AAAA ? DNS_T_AAAA : DNS_T_A, true, false, 0, 0);
    if (r->pending == 0) /* not even asked: no channel */
        src_finish(s, r);
}

/* ---- outcomes ----------------------------------------------------------- */

static void names_changed(struct names *n)
{
    n->dirty = true;
    if (n->on_change && !ev_is_active(&n->apply)) {
        ev_timer_set(&n->apply, 0., 0.);
        ev_timer_start(n->loop, &n->apply);
    }
}

static void on_apply(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct names *n = container_of(w, struct names, apply);
    if (!n->dirty || !n->on_change)
        return;
    n->dirty = false;
    n->on_change(n->arg);
}

/* "pool api" or "pool api, backend db (db-1.internal)", for log lines. */
static const char *src_what(const struct names_src *s, char *buf, size_t cap)
{
    if (s->backend[0])
        snprintf(buf, cap, "pool %s: backend %s (%s)", s->pool, s->backend, s->name);
    else
        snprintf(buf, cap, "pool %s: %s %s", s->pool, s->name, cfg_dns_type_name(s->type));
    return buf;
}

/* "10.0.0.1:8080 10.0.0.2:8080 (and 3 more)" */
static void set_text(const struct names_src *s, const struct disc_entry *e, int n, char *out,
                     size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n && i < NAMES_LOG_ADDRS; i++) {
        char t[CFG_NAME_MAX];
        disc_entry_text(&e[i], e[i].port ? e[i].port : s->port, t, sizeof(t));
        int k = snprintf(out + len, cap - len, "%s%s", len ? " " : "", t);
        if (k < 0 || (size_t)k >= cap - len)
            return;
        len += (size_t)k;
    }
    if (n > NAMES_LOG_ADDRS)
        snprintf(out + len, cap - len, " (and %d more)", n - NAMES_LOG_ADDRS);
    else if (n == 0)
        snprintf(out, cap, "nothing");
}

static void src_arm_tick(struct names_src *s)
{
    int64_t at = disc_next_tick(&s->st, &s->rules);
    ev_timer_stop(s->n->loop, &s->tick);
    if (!at)
        return;
    int64_t in = at - clock_mono_ms();
    ev_timer_set(&s->tick, in > 0 ? (double)in / 1000.0 + 0.001 : 0.001, 0.);
    ev_timer_start(s->n->loop, &s->tick);
}

static void src_outcome(struct names_src *s, enum disc_outcome o, int64_t now)
{
    char what[CFG_NAME_MAX * 2 + DNS_NAME_MAX + 32], set[NAMES_LOG_ADDRS * 48 + 32];
    src_what(s, what, sizeof(what));
    switch (o) {
    case DISC_CHANGED:
        set_text(s, s->st.set, s->st.nset, set, sizeof(set));
        log_info("discovery: %s: %s", what, set);
        names_changed(s->n);
        break;
    case DISC_EMPTIED:
        log_warn("discovery: %s: NXDOMAIN for %ums (keep_stale): no addresses any more", what,
                 s->rules.keep_stale_ms);
        event_add(EVK_DISCOVERY, LOGL_WARN, s->pool, s->backend[0] ? s->backend : NULL,
                  "%s: NXDOMAIN outlived keep_stale: emptied", s->name);
        names_changed(s->n);
        break;
    case DISC_HELD:
        if (now >= s->hold_log_next) {
            s->hold_log_next = now + DISC_LOG_EVERY_MS;
            log_warn("discovery: %s: more than %u changes a minute; holding the new answer "
                     "until the minute allows",
                     what, s->rules.max_changes);
            event_add(EVK_DISCOVERY, LOGL_WARN, s->pool, s->backend[0] ? s->backend : NULL,
                      "%s changes more than %u times a minute: damped", s->name,
                      s->rules.max_changes);
        }
        break;
    case DISC_KEPT: {
        uint32_t more;
        if (disc_log_allow(&s->st, now, &more)) {
            char extra[64] = "";
            set_text(s, s->st.set, s->st.nset, set, sizeof(set));
            if (more)
                snprintf(extra, sizeof(extra), " (%u more failures since the last line)", more);
            log_warn("discovery: %s: %s; keeping %s%s", what, s->st.last_error, set, extra);
            event_add(EVK_DISCOVERY, LOGL_WARN, s->pool, s->backend[0] ? s->backend : NULL,
                      "%s: %s; last good answer kept", s->name, s->st.last_error);
        }
        break;
    }
    case DISC_SAME:
        break;
    }
    src_arm_tick(s);
}

static void src_finish(struct names_src *s, struct names_round *r)
{
    int64_t now = clock_mono_ms();
    enum disc_outcome o;
    bool failed = r->failed || r->n == 0;
    s->round = NULL;
    s->answered = true;
    if (r->failed)
        o = disc_on_error(&s->st, &s->rules, r->kind, r->detail, now);
    else if (r->n == 0)
        o = disc_on_error(
            &s->st, &s->rules, DISC_E_EMPTY,
            s->type == CFG_DNS_SRV && !s->backend[0] ? "no target has an address" : NULL, now);
    else
        o = disc_on_answer(&s->st, &s->rules, r->e, r->n, r->ttl, now);
    free(r->e);
    free(r);
    src_outcome(s, o, now);
    src_schedule(s, disc_query_interval(&s->st, &s->rules, failed));
}

static void on_query_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct names_src *s = container_of(w, struct names_src, query);
    if (!s->round)
        src_start_round(s);
}

static void on_tick_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct names_src *s = container_of(w, struct names_src, tick);
    int64_t now = clock_mono_ms();
    src_outcome(s, disc_tick(&s->st, &s->rules, now), now);
}

static void src_schedule(struct names_src *s, uint32_t ms)
{
    ev_timer_stop(s->n->loop, &s->query);
    ev_timer_set(&s->query, ms / 1000.0, 0.);
    ev_timer_start(s->n->loop, &s->query);
}

/* ---- configuration ------------------------------------------------------ */

bool names_needed(const struct cfg *base)
{
    for (int i = 0; i < base->npools; i++)
        if (base->pools[i].discover.enabled || base->pools[i].nnamed)
            return true;
    return false;
}

static struct names_src *src_find(struct names_src **srcs, int n, const char *pool,
                                  const char *backend)
{
    for (int i = 0; i < n; i++)
        if (srcs[i] && strcmp(srcs[i]->pool, pool) == 0 && strcmp(srcs[i]->backend, backend) == 0)
            return srcs[i];
    return NULL;
}

static struct names_src *src_new(struct names *n, const char *pool, const char *backend,
                                 const char *name, enum cfg_dns_type type, uint16_t port,
                                 struct disc_rules rules)
{
    struct names_src *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->n = n;
    snprintf(s->pool, sizeof(s->pool), "%s", pool);
    snprintf(s->backend, sizeof(s->backend), "%s", backend);
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->type = type;
    s->port = port;
    s->rules = rules;
    ev_init(&s->query, on_query_timer);
    ev_init(&s->tick, on_tick_timer);
    return s;
}

static void src_free(struct names_src *s)
{
    if (!s)
        return;
    ev_timer_stop(s->n->loop, &s->query);
    ev_timer_stop(s->n->loop, &s->tick);
    if (s->round)
        s->round->src = NULL; /* cannot happen once the channel is gone; belt and braces */
    disc_state_free(&s->st);
    free(s);
}

/* The sources BASE needs, in *out; the state of OLD's of the same name moves over. */
static int build_sources(struct names *n, const struct cfg *base, struct names_src ***out,
                         int *nout)
{
    int cap = 0;
    for (int i = 0; i < base->npools; i++)
        cap += base->pools[i].discover.enabled + base->pools[i].nnamed;
    struct names_src **srcs = calloc((size_t)(cap ? cap : 1), sizeof(*srcs));
    if (!srcs)
        return -1;
    int k = 0;
    for (int i = 0; i < base->npools; i++) {
        const struct cfg_pool *p = &base->pools[i];
        for (int j = -1; j < p->nnamed; j++) {
            struct disc_rules rules = {.keep_stale_ms = NAMED_KEEP_STALE_MS,
                                       .max_changes = NAMED_MAX_CHANGES,
                                       .single = true};
            const char *backend = j < 0 ? "" : p->named[j].name;
            const char *name = j < 0 ? p->discover.name : p->named[j].host;
            enum cfg_dns_type type = j < 0 ? p->discover.type : CFG_DNS_A;
            if (j < 0 && !p->discover.enabled)
                continue;
            if (j < 0)
                rules = (struct disc_rules){.interval_ms = p->discover.interval_ms,
                                            .keep_stale_ms = p->discover.keep_stale_ms,
                                            .max_changes = p->discover.max_changes};
            struct names_src *s =
                src_new(n, p->name, backend, name, type,
                        j < 0 ? (uint16_t)p->discover.port : p->named[j].port, rules);
            if (!s)
                goto oom;
            struct names_src *old = src_find(n->srcs, n->nsrcs, p->name, backend);
            if (old) {
                s->hold_log_next = old->hold_log_next;
                s->st = old->st; /* the set in use, the figures, the damping window */
                memset(&old->st, 0, sizeof(old->st));
                if (strcmp(old->name, s->name) != 0 || old->type != s->type)
                    disc_renamed(&s->st);
            }
            srcs[k++] = s;
        }
    }
    *out = srcs;
    *nout = k;
    return 0;
oom:
    for (int i = 0; i < k; i++)
        src_free(srcs[i]);
    free(srcs);
    return -1;
}

int names_configure(struct names *n, const struct cfg *base, char *err, size_t errlen)
{
    struct names_src **srcs;
    int nsrcs, rc = 0;
    if (build_sources(n, base, &srcs, &nsrcs) == -1) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    dns_free(n->dns); /* cancels every round: they refer to the old sources */
    n->dns = NULL;
    for (int i = 0; i < n->nsrcs; i++)
        src_free(n->srcs[i]);
    free(n->srcs);
    n->srcs = srcs;
    n->nsrcs = nsrcs;
    n->dns_error[0] = 0;
    if (nsrcs) {
        char e[160];
        n->dns = dns_new(n->loop, base->resolvers, base->nresolvers, e, sizeof(e));
        if (!n->dns) {
            snprintf(n->dns_error, sizeof(n->dns_error), "%s", e);
            snprintf(err, errlen, "%s", e);
            rc = -1;
        }
    }
    for (int i = 0; i < nsrcs; i++)
        src_schedule(srcs[i], 0);
    return rc;
}

/* ---- start -------------------------------------------------------------- */

static void on_wait(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

void names_wait_first(struct names *n, double timeout_s)
{
    double deadline = ev_time() + timeout_s;
    ev_timer_init(&n->wait, on_wait, timeout_s, 0.);
    ev_timer_start(n->loop, &n->wait);
    for (;;) {
        int left = 0;
        for (int i = 0; i < n->nsrcs; i++)
            left += !n->srcs[i]->answered;
        if (!left || ev_time() >= deadline)
            break;
        ev_run(n->loop, EVRUN_ONCE);
    }
    ev_timer_stop(n->loop, &n->wait);
    for (int i = 0; i < n->nsrcs; i++) {
        struct names_src *s = n->srcs[i];
        char what[CFG_NAME_MAX * 2 + DNS_NAME_MAX + 32];
        src_what(s, what, sizeof(what));
        if (!s->answered)
            log_warn("discovery: %s: no answer within %.1fs; starting without its addresses", what,
                     timeout_s);
        else if (!s->st.nset)
            log_warn("discovery: %s: %s; starting without its addresses", what,
                     s->st.last_error[0] ? s->st.last_error : "no addresses");
    }
}

/* ---- snapshots ---------------------------------------------------------- */

struct cfg *names_snapshot(struct names *n, struct cfg *base)
{
    int np = base->npools;
    struct cfg_backend **lists = calloc((size_t)(np ? np : 1), sizeof(*lists));
    int *counts = calloc((size_t)(np ? np : 1), sizeof(*counts));
    char(**names)[CFG_NAME_MAX] = calloc((size_t)(np ? np : 1), sizeof(*names));
    struct cfg *out = NULL;
    if (!lists || !counts || !names)
        goto done;
    for (int i = 0; i < np; i++) {
        const struct cfg_pool *p = &base->pools[i];
        struct names_src *d = p->discover.enabled ? src_find(n->srcs, n->nsrcs, p->name, "") : NULL;
        int nd = d ? d->st.nset : 0, cap = p->nbackends + p->nnamed + nd;
        lists[i] = p->backends;
        counts[i] = p->nbackends;
        if (!p->discover.enabled && !p->nnamed)
            continue;
        struct cfg_backend *b = calloc((size_t)(cap ? cap : 1), sizeof(*b));
        names[i] = calloc((size_t)(nd ? nd : 1), sizeof(*names[i]));
        lists[i] = b;
        if (!b || !names[i])
            goto done;
        int k = 0;
        for (int j = 0; j < p->nbackends; j++)
            b[k++] = p->backends[j];
        for (int j = 0; j < p->nnamed; j++) {
            struct names_src *s = src_find(n->srcs, n->nsrcs, p->name, p->named[j].name);
            if (s && s->st.nset) /* no address yet: not in the pool yet */
                disc_named_backend(base, &p->named[j], &s->st.set[0], &b[k++]);
        }
        if (d)
            k += disc_backends(base, p, d->st.set, nd, b + k, names[i]);
        counts[i] = k;
    }
    out = cfg_derive(base, lists, counts);
    if (out)
        n->dirty = false; /* the owner has the sets of now */
done:
    for (int i = 0; lists && names && i < np; i++) {
        if (lists[i] != base->pools[i].backends)
            free(lists[i]);
        free(names[i]);
    }
    free(lists);
    free(counts);
    free(names);
    return out;
}

/* ---- the owner ---------------------------------------------------------- */

struct names *names_new(struct ev_loop *loop)
{
    struct names *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->loop = loop;
    ev_init(&n->apply, on_apply);
    return n;
}

void names_on_change(struct names *n, void (*cb)(void *arg), void *arg)
{
    n->on_change = cb;
    n->arg = arg;
    if (n->dirty)
        names_changed(n);
}

void names_apply_failed(struct names *n, const char *msg)
{
    n->apply_failed++;
    log_err("discovery: the new backends could not be applied: %s; they will be at the next "
            "change",
            msg);
}

void names_free(struct names *n)
{
    if (!n)
        return;
    dns_free(n->dns);
    for (int i = 0; i < n->nsrcs; i++)
        src_free(n->srcs[i]);
    free(n->srcs);
    ev_timer_stop(n->loop, &n->apply);
    free(n);
}

/* ---- figures ------------------------------------------------------------ */

/* Unix seconds of monotonic ms T (0 stays 0). */
static double wall_of(int64_t t)
{
    return t ? clock_wall_s() - (double)(clock_mono_ms() - t) / 1000.0 : 0;
}

static void entries_json(const struct names_src *s, const struct disc_entry *e, int n,
                         struct sbuf *o)
{
    sbuf_put(o, "[", 1);
    for (int i = 0; i < n; i++) {
        char t[CFG_NAME_MAX];
        disc_entry_text(&e[i], e[i].port ? e[i].port : s->port, t, sizeof(t));
        if (i)
            sbuf_put(o, ",", 1);
        sbuf_json_str(o, t);
    }
    sbuf_put(o, "]", 1);
}

static void src_json(const struct names *n, const struct names_src *s, struct sbuf *o)
{
    const struct disc_state *st = &s->st;
    sbuf_puts(o, "{\"name\":");
    sbuf_json_str(o, s->name);
    sbuf_printf(o, ",\"type\":\"%s\"", s->backend[0] ? "A/AAAA" : cfg_dns_type_name(s->type));
    if (s->backend[0]) {
        sbuf_puts(o, ",\"backend\":");
        sbuf_json_str(o, s->backend);
    }
    sbuf_puts(o, ",\"resolvers\":[");
    const char *sv = n->dns ? dns_servers(n->dns) : "";
    for (int k = 0; *sv; k++) {
        size_t len = strcspn(sv, " ");
        char one[64];
        snprintf(one, sizeof(one), "%.*s", (int)len, sv);
        if (k)
            sbuf_put(o, ",", 1);
        sbuf_json_str(o, one);
        sv += len + (sv[len] == ' ');
    }
    sbuf_puts(o, "],\"last_answer\":");
    entries_json(s, st->set, st->nset, o);
    if (st->holding) {
        sbuf_puts(o, ",\"held_answer\":");
        entries_json(s, st->held, st->nheld, o);
    }
    double next = ev_is_active(&s->query) ? ev_timer_remaining(n->loop, (ev_timer *)&s->query) : 0;
    sbuf_printf(o,
                ",\"last_update\":%.3f,\"last_change\":%.3f,\"ttl_s\":%u,\"next_in_s\":%.3f,"
                "\"answers\":%llu,\"updates\":%llu,\"damped\":%llu,\"holding\":%s,\"errors\":{",
                wall_of(st->last_answer_ms), wall_of(st->last_change_ms), st->ttl_s,
                next > 0 ? next : 0, (unsigned long long)st->answers,
                (unsigned long long)st->updates, (unsigned long long)st->damped,
                st->holding ? "true" : "false");
    for (int k = 0; k < DISC_E_COUNT; k++)
        sbuf_printf(o, "%s\"%s\":%llu", k ? "," : "", disc_err_name(k),
                    (unsigned long long)st->errors[k]);
    sbuf_puts(o, "},\"last_error\":");
    sbuf_json_str(o, n->dns_error[0] ? n->dns_error : st->last_error);
    sbuf_printf(o,
                ",\"last_error_time\":%.3f,\"stale\":%s,\"stale_since\":%.3f,"
                "\"nxdomain_since\":%.3f,\"apply_failed\":%llu}",
                wall_of(st->last_error_ms), disc_is_stale(st) ? "true" : "false",
                disc_is_stale(st) ? wall_of(st->failing_since) : 0, wall_of(st->nx_since),
                (unsigned long long)n->apply_failed);
}

void names_pool_json(const struct names *n, const char *pool, struct sbuf *o)
{
    const struct names_src *d = n ? src_find(n->srcs, n->nsrcs, pool, "") : NULL;
    sbuf_puts(o, ",\"discovery\":");
    if (d)
        src_json(n, d, o);
    else
        sbuf_puts(o, "null");
    sbuf_puts(o, ",\"host_names\":[");
    int k = 0;
    for (int i = 0; n && i < n->nsrcs; i++) {
        const struct names_src *s = n->srcs[i];
        if (strcmp(s->pool, pool) != 0 || !s->backend[0])
            continue;
        if (k++)
            sbuf_put(o, ",", 1);
        src_json(n, s, o);
    }
    sbuf_put(o, "]", 1);
}

bool names_pool_figures(const struct names *n, const char *pool, struct names_figures *f)
{
    bool any = false;
    memset(f, 0, sizeof(*f));
    for (int i = 0; n && i < n->nsrcs; i++) {
        const struct names_src *s = n->srcs[i];
        if (strcmp(s->pool, pool) != 0)
            continue;
        any = true;
        f->updates += s->st.updates;
        for (int k = 0; k < DISC_E_COUNT; k++)
            f->errors[k] += s->st.errors[k];
        f->stale |= disc_is_stale(&s->st);
    }
    return any;
}
