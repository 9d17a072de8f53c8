/*
 * dns.h - DNS queries with c-ares on a libev loop (the main thread's).
 *
 * One struct dns is one c-ares channel: the resolvers given, or those of
 * /etc/resolv.conf. Every query is non-blocking: c-ares says which sockets
 * it wants watched (ARES_OPT_SOCK_STATE_CB) and each gets an ev_io; one
 * ev_timer follows ares_timeout(). Nothing here blocks and nothing runs on a
 * worker or the health thread.
 *
 * A name is queried as written: no search list, no ndots (a discovery name
 * is meant exactly; a search list would multiply the queries). A query tries
 * each server with a 1 s timeout, twice over (c-ares doubles the timeout on
 * the second round), so an unanswered query fails after about 3 s.
 *
 * The callback gets the answer parsed: A or AAAA addresses with their TTLs,
 * or SRV records and the addresses the additional section gave for their
 * targets. The result and everything it points to live only during the call.
 */
#ifndef LB_DNS_H
#define LB_DNS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"

#define DNS_MAX_RECORDS 512 /* records of one answer kept; the rest are dropped */
#define DNS_NAME_MAX    256

enum dns_type { DNS_T_A, DNS_T_AAAA, DNS_T_SRV };

enum dns_status {
    DNS_OK,        /* records in the result */
    DNS_NXDOMAIN,  /* the name does not exist */
    DNS_NODATA,    /* the name exists, without records of that type */
    DNS_SERVFAIL,  /* every server failed: SERVFAIL, REFUSED or NOTIMP */
    DNS_TIMEOUT,   /* no answer: timeouts, or the servers refused the connection */
    DNS_ERROR,     /* anything else: a malformed answer, out of memory */
    DNS_CANCELLED, /* dns_free() came first: free the query's context, touch nothing else */
};

struct dns_addr {
    int family;     /* AF_INET or AF_INET6 */
    uint8_t ip[16]; /* 4 bytes for AF_INET */
    uint32_t ttl;   /* seconds */
};

struct dns_srv {
    uint16_t priority, weight, port;
    uint32_t ttl;
    char target[DNS_NAME_MAX]; /* "." (no service here) is left out */
};

/* An address of the additional section, for a SRV target. */
struct dns_extra {
    char name[DNS_NAME_MAX];
    struct dns_addr addr;
};

struct dns_result {
    enum dns_status status;
    const char *detail; /* for a failure: c-ares' words ("Timeout while contacting DNS servers") */
    uint32_t ttl;       /* DNS_OK: the smallest TTL of the records, seconds */
    const struct dns_addr *addrs; /* A, AAAA */
    int naddrs;
    const struct dns_srv *srvs; /* SRV */
    int nsrvs;
    const struct dns_extra *extra; /* SRV: additional-section A and AAAA records */
    int nextra;
};

typedef void (*dns_cb)(void *arg, const struct dns_result *r);

struct dns;

/*
 * A channel on LOOP to SERVERS (NSERVERS 0: those of /etc/resolv.conf).
 * NULL with a message in ERR.
 */
struct dns *dns_new(struct ev_loop *loop, const struct cfg_addr *servers, int nservers, char *err,
                    size_t errlen);

/*
 * Ask for NAME's records of TYPE; CB(ARG, result) runs exactly once, always
 * from the loop (never before dns_query returns). Returns 0, or -1 when out
 * of memory (CB will not run).
 */
int dns_query(struct dns *d, const char *name, enum dns_type type, dns_cb cb, void *arg);

/* The servers in use, "10.0.0.10:53 10.0.0.11:53", for stats. */
const char *dns_servers(const struct dns *d);

/* Every pending callback runs with DNS_CANCELLED, then the channel goes. NULL is fine.
 * Not from inside a callback of D. */
void dns_free(struct dns *d);

/* "ok", "nxdomain", "nodata", "servfail", "timeout", "error", "cancelled" */
const char *dns_status_name(enum dns_status s);

/* "10.1.2.3:8080" or "[fd00::1]:8080" into OUT (at least 64 bytes); the length. */
int dns_addr_text(const struct dns_addr *a, uint16_t port, char *out, size_t cap);

#endif
