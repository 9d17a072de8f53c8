/*
 * dns.c - c-ares on a libev loop, and answers parsed into plain records.
 */
#include "lb/dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <ares_dns.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/core/container.h"

#define DNS_SLOTS      32   /* sockets c-ares may have open at once: UDP and TCP per server */
#define DNS_TIMEOUT_MS 1000 /* per try; c-ares doubles it on the second round */
#define DNS_TRIES      2

/* RFC 1035 numbers (<arpa/nameser.h> is not in every libc) */
#define DNS_HDR_LEN  12 /* message header */
#define DNS_Q_FIXED  4  /* a question's type and class */
#define DNS_RR_FIXED 10 /* a record's type, class, TTL and data length */
#define DNS_CLASS_IN 1
#define DNS_RR_A     1
#define DNS_RR_AAAA  28
#define DNS_RR_SRV   33

struct dns_slot {
    ev_io io;
    struct dns *d;
    bool used;
};

/* One query in flight. */
struct dns_q {
    struct dns *d;
    char name[DNS_NAME_MAX];
    int retries; /* asks left of another server after a SERVFAIL or REFUSED */
    enum dns_type type;
    dns_cb cb;
    void *arg;
    int sync_status;    /* c-ares answered before ares_query returned: delivered later */
    struct dns_q *next; /* on d->deferred */
};

struct dns {
    struct ev_loop *loop;
    ares_channel ch;
    ev_timer timer;   /* follows ares_timeout() */
    ev_timer deliver; /* runs the callbacks of queries that failed at once */
    struct dns_q *deferred;
    bool issuing; /* inside ares_query(): a callback now is a synchronous one */
    struct dns_q *issued_sync;
    int nservers;
    struct dns_slot slots[DNS_SLOTS];
    char servers[CFG_RESOLVERS_MAX * 56 + 64];
};

const char *dns_status_name(enum dns_status s)
{
    static const char *const names[] = {"ok",      "nxdomain", "nodata",   "servfail",
                                        "timeout", "error",    "cancelled"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "error";
}

int dns_addr_text(const struct dns_addr *a, uint16_t port, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(a->family, a->ip, ip, sizeof(ip)))
        snprintf(ip, sizeof(ip), "?");
    return snprintf(out, cap, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)port);
}

/* ---- the loop's side ---------------------------------------------------- */

static void dns_rearm(struct dns *d)
{
    struct timeval tv, *tvp = ares_timeout(d->ch, NULL, &tv);
    ev_timer_stop(d->loop, &d->timer);
    if (!tvp)
        return;
    ev_timer_set(&d->timer, (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6 + 0.001, 0.);
    ev_timer_start(d->loop, &d->timer);
}

static void dns_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct dns_slot *s = container_of(w, struct dns_slot, io);
    struct dns *d = s->d;
    int fd = w->fd; /* the slot may be released inside ares_process_fd */
    ares_process_fd(d->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    dns_rearm(d);
}

static void dns_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dns *d = container_of(w, struct dns, timer);
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_rearm(d);
}

/* c-ares opens, closes, or changes what it waits for on a socket. */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_slot *s = NULL, *free_slot = NULL;
    for (int i = 0; i < DNS_SLOTS && !s; i++) {
        if (d->slots[i].used && d->slots[i].io.fd == fd)
            s = &d->slots[i];
        else if (!d->slots[i].used && !free_slot)
            free_slot = &d->slots[i];
    }
    if (s)
        ev_io_stop(d->loop, &s->io);
    if (!readable && !writable) {
        if (s)
            s->used = false;
        return;
    }
    if (!s && !(s = free_slot))
        return; /* more sockets than servers can need: that query will time out */
    s->used = true;
    s->d = d;
    ev_io_init(&s->io, dns_on_io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(d->loop, &s->io);
}

/* ---- answers ------------------------------------------------------------ */

enum rr_section { RR_ANSWER, RR_AUTHORITY, RR_ADDITIONAL };

struct rr_seen {
    uint32_t srv_ttl; /* the smallest TTL of the answer's SRV records */
    bool any_srv;
    struct dns_extra *extra;
    int nextra;
};

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* RFC 2181 8: a TTL with the top bit set is zero. */
static uint32_t get_ttl(const unsigned char *p)
{
    uint32_t t = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return t > 0x7fffffffu ? 0 : t;
}

/*
 * What ares_parse_srv_reply leaves out: the SRV records' TTLs and the
 * addresses in the additional section. Names are expanded by c-ares (which
 * bounds compression pointers); every length is checked against the end.
 * Returns 0, or -1 for a malformed message.
 */
static int rr_walk(const unsigned char *abuf, int alen, struct rr_seen *seen)
{
    if (alen < DNS_HDR_LEN)
        return -1;
    const unsigned char *p = abuf + DNS_HDR_LEN, *end = abuf + alen;
    unsigned qd = DNS_HEADER_QDCOUNT(abuf), an = DNS_HEADER_ANCOUNT(abuf);
    unsigned total = an + DNS_HEADER_NSCOUNT(abuf) + DNS_HEADER_ARCOUNT(abuf);
    for (unsigned i = 0; i < qd + total; i++) {
        char *name = NULL;
        long enclen;
        if (ares_expand_name(p, abuf, alen, &name, &enclen) != ARES_SUCCESS)
            return -1;
        p += enclen;
        if (i < qd) { /* a question: type and class */
            ares_free_string(name);
            if (end - p < DNS_Q_FIXED)
                return -1;
            p += DNS_Q_FIXED;
            continue;
        }
        if (end - p < DNS_RR_FIXED) {
            ares_free_string(name);
            return -1;
        }
        unsigned type = get16(p), rdlen = get16(p + 8);
        uint32_t ttl = get_ttl(p + 4);
        p += DNS_RR_FIXED;
        if ((size_t)(end - p) < rdlen) {
            ares_free_string(name);
            return -1;
        }
        unsigned k = i - qd;
        enum rr_section sec = k < an                                 ? RR_ANSWER
                              : k < total - DNS_HEADER_ARCOUNT(abuf) ? RR_AUTHORITY
                                                                     : RR_ADDITIONAL;
        if (sec == RR_ANSWER && type == DNS_RR_SRV) {
            seen->srv_ttl = !seen->any_srv || ttl < seen->srv_ttl ? ttl : seen->srv_ttl;
            seen->any_srv = true;
        } else if (sec == RR_ADDITIONAL && seen->nextra < DNS_MAX_RECORDS &&
                   ((type == DNS_RR_A && rdlen == 4) || (type == DNS_RR_AAAA && rdlen == 16))) {
            struct dns_extra *x = &seen->extra[seen->nextra++];
            snprintf(x->name, sizeof(x->name), "%s", name);
            x->addr.family = type == DNS_RR_A ? AF_INET : AF_INET6;
            memcpy(x->addr.ip, p, rdlen);
            x->addr.ttl = ttl;
        }
        ares_free_string(name);
        p += rdlen;
    }
    return 0;
}

static enum dns_status status_of(int st)
{
    switch (st) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENOTFOUND:
        return DNS_NXDOMAIN;
    case ARES_ENODATA:
        return DNS_NODATA;
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_ENOTIMP:
        return DNS_SERVFAIL;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED:
        return DNS_TIMEOUT;
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
        return DNS_CANCELLED;
    default:
        return DNS_ERROR;
    }
}

/* A and AAAA answers (c-ares follows CNAMEs and gives the TTLs). */
static void parse_addrs(struct dns_q *q, const unsigned char *abuf, int alen, struct dns_result *r)
{
    static const char bad[] = "malformed answer";
    struct dns_addr *out = calloc(DNS_MAX_RECORDS, sizeof(*out));
    int n = DNS_MAX_RECORDS, st;
    struct hostent *he = NULL;
    if (!out) {
        r->status = DNS_ERROR;
        r->detail = "out of memory";
        return;
    }
    if (q->type == DNS_T_A) {
        struct ares_addrttl *t = calloc(DNS_MAX_RECORDS, sizeof(*t));
        st = t ? ares_parse_a_reply(abuf, alen, &he, t, &n) : ARES_ENOMEM;
        for (int i = 0; st == ARES_SUCCESS && i < n; i++) {
            out[i].family = AF_INET;
            memcpy(out[i].ip, &t[i].ipaddr, 4);
            out[i].ttl = t[i].ttl > 0 ? (uint32_t)t[i].ttl : 0;
        }
        free(t);
    } else {
        struct ares_addr6ttl *t = calloc(DNS_MAX_RECORDS, sizeof(*t));
        st = t ? ares_parse_aaaa_reply(abuf, alen, &he, t, &n) : ARES_ENOMEM;
        for (int i = 0; st == ARES_SUCCESS && i < n; i++) {
            out[i].family = AF_INET6;
            memcpy(out[i].ip, &t[i].ip6addr, 16);
            out[i].ttl = t[i].ttl > 0 ? (uint32_t)t[i].ttl : 0;
        }
        free(t);
    }
    if (he)
        ares_free_hostent(he);
    if (st == ARES_SUCCESS && n == 0)
        st = ARES_ENODATA;
    r->status = st == ARES_SUCCESS ? DNS_OK : st == ARES_ENODATA ? DNS_NODATA : DNS_ERROR;
    r->detail = r->status == DNS_ERROR ? bad : NULL;
    if (r->status == DNS_OK) {
        r->ttl = out[0].ttl;
        for (int i = 1; i < n; i++)
            r->ttl = out[i].ttl < r->ttl ? out[i].ttl : r->ttl;
        r->addrs = out;
        r->naddrs = n;
        return;
    }
    free(out);
}

static void parse_srv(const unsigned char *abuf, int alen, struct dns_result *r)
{
    struct ares_srv_reply *list = NULL;
    struct rr_seen seen = {0};
    struct dns_srv *srvs = calloc(DNS_MAX_RECORDS, sizeof(*srvs));
    seen.extra = calloc(DNS_MAX_RECORDS, sizeof(*seen.extra));
    int st = srvs && seen.extra ? ares_parse_srv_reply(abuf, alen, &list) : ARES_ENOMEM;
    if (st == ARES_SUCCESS && rr_walk(abuf, alen, &seen) == -1)
        st = ARES_EBADRESP;
    int n = 0;
    for (struct ares_srv_reply *s = list; st == ARES_SUCCESS && s && n < DNS_MAX_RECORDS;
         s = s->next) {
        if (!s->host || !s->host[0] || strcmp(s->host, ".") == 0)
            continue; /* RFC 2782: "." means the service is not here */
        srvs[n].priority = s->priority;
        srvs[n].weight = s->weight;
        srvs[n].port = s->port;
        srvs[n].ttl = seen.srv_ttl;
        snprintf(srvs[n].target, sizeof(srvs[n].target), "%s", s->host);
        n++;
    }
    if (list)
        ares_free_data(list);
    if (st == ARES_SUCCESS && n == 0)
        st = ARES_ENODATA;
    r->status = st == ARES_SUCCESS ? DNS_OK : st == ARES_ENODATA ? DNS_NODATA : DNS_ERROR;
    r->detail = st == ARES_ENOMEM        ? "out of memory"
                : r->status == DNS_ERROR ? "malformed answer"
                                         : NULL;
    if (r->status != DNS_OK) {
        free(srvs);
        free(seen.extra);
        return;
    }
    r->ttl = seen.srv_ttl;
    r->srvs = srvs;
    r->nsrvs = n;
    r->extra = seen.extra;
    r->nextra = seen.nextra;
}

static void deliver(struct dns_q *q, int status, const unsigned char *abuf, int alen)
{
    struct dns_result r = {.status = status_of(status)};
    if (r.status != DNS_OK)
        r.detail = ares_strerror(status);
    else if (q->type == DNS_T_SRV)
        parse_srv(abuf, alen, &r);
    else
        parse_addrs(q, abuf, alen, &r);
    q->cb(q->arg, &r);
    free((void *)r.addrs);
    free((void *)r.srvs);
    free((void *)r.extra);
    free(q);
}

static void issue(struct dns_q *q);

static void dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_q *q = arg;
    struct dns *d = q->d;
    if ((status == ARES_ESERVFAIL || status == ARES_EREFUSED || status == ARES_ENOTIMP) &&
        q->retries-- > 0 && !(d->issuing && q == d->issued_sync)) {
        issue(q); /* the servers rotate: this asks the next one */
        return;
    }
    if (d->issuing && q == d->issued_sync) {
        /* failed before ares_query returned: the caller hears it from the loop */
        q->sync_status = status == ARES_SUCCESS ? ARES_EBADRESP : status;
        q->next = d->deferred;
        d->deferred = q;
        ev_feed_event(d->loop, &d->deliver, EV_TIMER);
        return;
    }
    deliver(q, status, abuf, alen);
}

static void dns_on_deliver(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dns *d = container_of(w, struct dns, deliver);
    while (d->deferred) {
        struct dns_q *q = d->deferred;
        d->deferred = q->next;
        deliver(q, q->sync_status, NULL, 0);
    }
}

static void issue(struct dns_q *q)
{
    static const int types[] = {
        [DNS_T_A] = DNS_RR_A, [DNS_T_AAAA] = DNS_RR_AAAA, [DNS_T_SRV] = DNS_RR_SRV};
    struct dns *d = q->d;
    bool outer = d->issuing;
    struct dns_q *outer_q = d->issued_sync;
    d->issuing = true;
    d->issued_sync = q;
    ares_query(d->ch, q->name, DNS_CLASS_IN, types[q->type], dns_on_answer, q);
    d->issuing = outer;
    d->issued_sync = outer_q;
}

int dns_query(struct dns *d, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
    struct dns_q *q = calloc(1, sizeof(*q));
    if (!q)
        return -1;
    q->d = d;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->retries = d->nservers - 1;
    q->type = type;
    q->cb = cb;
    q->arg = arg;
    issue(q);
    dns_rearm(d);
    return 0;
}

/* ---- the channel -------------------------------------------------------- */

static void servers_text(struct dns *d)
{
    struct ares_addr_port_node *list = NULL;
    size_t len = 0;
    d->servers[0] = 0;
    if (ares_get_servers_ports(d->ch, &list) != ARES_SUCCESS)
        return;
    for (struct ares_addr_port_node *s = list; s; s = s->next) {
        struct dns_addr a = {.family = s->family};
        memcpy(a.ip, &s->addr, s->family == AF_INET ? 4 : 16);
        char t[64];
        dns_addr_text(&a, (uint16_t)(s->udp_port ? s->udp_port : 53), t, sizeof(t));
        int n = snprintf(d->servers + len, sizeof(d->servers) - len, "%s%s", len ? " " : "", t);
        if (n < 0 || (size_t)n >= sizeof(d->servers) - len)
            break;
        len += (size_t)n;
    }
    ares_free_data(list);
}

static int set_servers(struct dns *d, const struct cfg_addr *servers, int n)
{
    struct ares_addr_port_node nodes[CFG_RESOLVERS_MAX];
    int k = 0;
    for (int i = 0; i < n && k < CFG_RESOLVERS_MAX; i++) {
        const struct sockaddr_storage *ss = &servers[i].sa;
        struct ares_addr_port_node *nd = &nodes[k];
        memset(nd, 0, sizeof(*nd));
        nd->family = ss->ss_family;
        if (ss->ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
            memcpy(&nd->addr.addr4, &sin->sin_addr, 4);
            nd->udp_port = nd->tcp_port = ntohs(sin->sin_port);
        } else if (ss->ss_family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
            memcpy(&nd->addr.addr6, &sin6->sin6_addr, 16);
            nd->udp_port = nd->tcp_port = ntohs(sin6->sin6_port);
        } else {
            continue;
        }
        if (k)
            nodes[k - 1].next = nd;
        k++;
    }
    return k ? ares_set_servers_ports(d->ch, nodes) : ARES_SUCCESS;
}

struct dns *dns_new(struct ev_loop *loop, const struct cfg_addr *servers, int nservers, char *err,
                    size_t errlen)
{
    struct dns *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int st = ares_library_init(ARES_LIB_INIT_ALL);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
        free(d);
        return NULL;
    }
    d->loop = loop;
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = dns_sock_state;
    o.sock_state_cb_data = d;
    o.timeout = DNS_TIMEOUT_MS;
    o.tries = DNS_TRIES;
    /* SERVFAIL and REFUSED reach us as such (c-ares 1.18 would report them as
     * "could not contact DNS servers", like a closed port); dns_on_answer asks
     * the other servers itself, in turn (ARES_OPT_ROTATE) */
    o.flags = ARES_FLAG_NOCHECKRESP;
    st = ares_init_options(&d->ch, &o,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
                               ARES_OPT_FLAGS | ARES_OPT_ROTATE);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
        ares_library_cleanup();
        free(d);
        return NULL;
    }
    if ((st = set_servers(d, servers, nservers)) != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: resolvers: %s", ares_strerror(st));
        ares_destroy(d->ch);
        ares_library_cleanup();
        free(d);
        return NULL;
    }
    servers_text(d);
    d->nservers = 1;
    for (const char *p = d->servers; *p; p++)
        d->nservers += *p == ' ';
    ev_init(&d->timer, dns_on_timer);
    ev_init(&d->deliver, dns_on_deliver);
    return d;
}

const char *dns_servers(const struct dns *d)
{
    return d->servers;
}

void dns_free(struct dns *d)
{
    if (!d)
        return;
    ares_destroy(d->ch); /* callbacks run with ARES_EDESTRUCTION; sockets close */
    while (d->deferred) {
        struct dns_q *q = d->deferred;
        d->deferred = q->next;
        deliver(q, ARES_EDESTRUCTION, NULL, 0);
    }
    ev_timer_stop(d->loop, &d->timer);
    ev_clear_pending(d->loop, &d->deliver);
    for (int i = 0; i < DNS_SLOTS; i++)
        if (d->slots[i].used)
            ev_io_stop(d->loop, &d->slots[i].io);
    ares_library_cleanup();
    free(d);
}
