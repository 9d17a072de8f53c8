/*
 * cfg.h - the configuration snapshot.
 *
 * cfg_load() turns a libconfig file into one validated, immutable struct cfg.
 * Every error found is reported (not just the first) as "FILE:LINE: message"
 * naming the setting and the bad value. A loaded snapshot is never modified;
 * a reload builds a new one and the old one is freed by cfg_free() once its
 * last user lets go. All strings and arrays hang off the snapshot and die
 * with it.
 *
 * Indexes (listener->pool, route->pool) refer to cfg->pools[].
 */
#ifndef LB_CFG_H
#define LB_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define CFG_NAME_MAX 64 /* pool, backend, listener names */
/* admin.token characters: the token travels in an admin request head, which
 * is limited (lb/admin.c checks that this fits) */
#define CFG_TOKEN_MAX 4096

enum cfg_level { CFG_LOG_ERROR, CFG_LOG_WARN, CFG_LOG_INFO, CFG_LOG_DEBUG };
enum cfg_log_format { CFG_FMT_TEXT, CFG_FMT_JSON };
enum cfg_admin_state { CFG_ADMIN_ACTIVE, CFG_ADMIN_DRAIN, CFG_ADMIN_MAINT };
enum cfg_balance { CFG_BAL_ROUND_ROBIN, CFG_BAL_LEAST_REQUEST, CFG_BAL_P2C_EWMA, CFG_BAL_HASH };
enum cfg_locality { CFG_LOC_ZONE_AWARE, CFG_LOC_OFF };
/* lb.splice: move large plain-TCP bodies through a pipe (auto) or always through buffers */
enum cfg_splice { CFG_SPLICE_AUTO, CFG_SPLICE_OFF };
enum cfg_hash_src {
    CFG_HASH_HEADER,
    CFG_HASH_COOKIE,
    CFG_HASH_QUERY,
    CFG_HASH_PATH,
    CFG_HASH_CLIENT_IP
};
enum cfg_health_type { CFG_HC_HTTP, CFG_HC_TCP, CFG_HC_OFF };

/* retry.on conditions besides statuses */
#define CFG_RETRY_CONNECT_FAILURE 0x1u
#define CFG_RETRY_RESET           0x2u
#define CFG_RETRY_TIMEOUT         0x4u
#define CFG_RETRY_INVALID         0x8u /* backend answered garbage */

/* A set of HTTP status codes 100..599, e.g. "500-599" or "502,503,504" or "200-399". */
struct cfg_status_set {
    uint64_t bits[10]; /* bit n set: status n is in the set (n < 640) */
};

static inline bool cfg_status_has(const struct cfg_status_set *s, unsigned code)
{
    return code < 640 && (s->bits[code >> 6] >> (code & 63)) & 1u;
}

/* "HOST:PORT", "[v6]:PORT" or "unix:/path", resolved numerically (no DNS at runtime). */
struct cfg_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char text[128]; /* as written in the file, for logs and stats */
};

/* An address block (listener.trusted_forwarders). */
struct cfg_cidr {
    uint8_t addr[16]; /* network address; IPv4 in the first 4 bytes */
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t bits;     /* prefix length */
};

struct cfg_route {
    const char *host;        /* NULL: any host; else exact, case-insensitive, port ignored */
    const char *path_prefix; /* NULL: any path */
    size_t path_prefix_len;
    int pool; /* index into cfg->pools */
    int line;
};

#define CFG_TLS_CERTS_MAX 64 /* certificates of one listener */

/* A certificate and its key: PEM files; the certificate file may hold its chain after it. */
struct cfg_tls_cert {
    const char *cert;
    const char *key;
    int line;
};

/* listener.tls: terminating TLS. */
struct cfg_tls {
    struct cfg_tls_cert *certs; /* chosen by SNI; the first for unknown or absent names */
    int ncerts;
    const char *cert, *key;   /* the one-certificate form, folded into certs */
    int min_version;          /* TLS1_2_VERSION (0x0303) or TLS1_3_VERSION (0x0304) */
    const char *ciphers;      /* TLS 1.2 cipher list; NULL: forward secret AEAD suites */
    const char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's */
    bool tickets;             /* session tickets, with keys shared by every worker */
    int line;
};

/* pool.tls: TLS to the backends (and their health checks). */
struct cfg_backend_tls {
    bool enabled;
    bool verify;      /* the backend's certificate is checked (default) */
    const char *ca;   /* PEM file of trusted CAs; NULL: the system's store */
    const char *sni;  /* server name sent and checked; NULL: the backend's host */
    const char *cert; /* client certificate and key, or NULL */
    const char *key;
    int min_version;
    int line;
};

struct cfg_listener {
    const char *name;
    struct cfg_addr addr;
    int pool; /* default pool, index into cfg->pools */
    struct cfg_route *routes;
    int nroutes;
    bool tls_enabled;
    struct cfg_tls tls;
    struct cfg_cidr *trusted; /* trusted_forwarders: their forwarding headers are kept */
    int ntrusted;
    int line;
};

struct cfg_breaker {
    uint32_t consecutive_failures; /* 0 disables this trigger */
    double failure_rate;           /* 0..1; 0 disables */
    uint32_t min_requests;
    uint32_t window_ms;
    uint32_t slow_call_ms;
    double slow_call_rate; /* 0..1; 0 disables */
    uint32_t open_for_ms;
    uint32_t max_open_for_ms;
    uint32_t half_open_probes;
    struct cfg_status_set failure_statuses;
};

/* Outlier detection (lb/outlier.h): always on; ejection is the operator's choice. */
struct cfg_outlier {
    bool eject;         /* let the breaker open a flagged backend */
    double max_ejected; /* 0..1: share of the pool that may be ejected at once (at least one) */
};

struct cfg_limits {
    uint32_t max_connections; /* per backend, all workers together */
    uint32_t max_inflight;
    uint32_t max_pending; /* per pool */
    uint32_t pending_timeout_ms;
};

struct cfg_retry {
    uint32_t attempts; /* extra tries */
    double budget;     /* fraction of requests */
    unsigned on;       /* CFG_RETRY_* bits */
    struct cfg_status_set on_statuses;
};

struct cfg_health {
    enum cfg_health_type type;
    const char *path;
    const char *host; /* Host header for http checks; NULL: the backend address */
    struct cfg_status_set expect;
    uint32_t interval_ms;
    uint32_t timeout_ms;
    uint32_t rise;
    uint32_t fall;
    double jitter; /* 0..0.5, fraction of interval */
};

struct cfg_backend {
    const char *name;
    struct cfg_addr addr; /* len 0 (no address yet) only in a pool's `named` list */
    uint32_t weight;      /* 0..1000 */
    const char *zone;     /* "" when not given */
    const char *region;   /* "" when not given */
    enum cfg_admin_state state;
    const char *host; /* the DNS name of an address given as "NAME:PORT", else NULL;
                       * addr.text keeps "NAME:PORT" (TLS and health checks use it) */
    uint16_t port;    /* with host: the port */
    bool discovered;  /* made from a pool's discover answer, not written in the file */
    int line;
};

enum cfg_dns_type { CFG_DNS_A, CFG_DNS_AAAA, CFG_DNS_SRV };

/*
 * pool.discover: the pool's backends (besides those of its list) are the
 * addresses a DNS name resolves to, kept up to date at run time. The loader
 * only checks the keys; it resolves nothing.
 */
struct cfg_discover {
    bool enabled;
    const char *name; /* the name to query, as written (a trailing dot is allowed) */
    enum cfg_dns_type type;
    uint32_t port;           /* A, AAAA: the backends' port; 0 for SRV (the records give it) */
    uint32_t interval_ms;    /* between queries; 0: the answer's TTL, within [1 s, 60 s] */
    uint32_t keep_stale_ms;  /* NXDOMAIN empties the pool only after this long */
    uint32_t max_changes;    /* changes applied per minute, more are held; 0: no limit */
    struct cfg_backend tmpl; /* template: weight, zone, region, state of the backends made */
    int line;
};

/* A block of addresses whose backends are in ZONE (top-level `zones`). */
struct cfg_zone_net {
    struct cfg_cidr net;
    const char *zone;
    const char *region; /* "" when not given */
    int line;
};

#define CFG_RESOLVERS_MAX 8 /* DNS servers in `resolvers` */

struct cfg_pool {
    const char *name;
    enum cfg_balance balance;
    enum cfg_hash_src hash_src;
    const char *hash_name; /* header/cookie/query name; NULL for path and client-ip */
    double hash_balance;   /* >= 1.0 */
    enum cfg_locality locality;
    double panic_threshold; /* 0..1 */
    uint32_t slow_start_ms;
    struct cfg_breaker breaker;
    struct cfg_outlier outlier;
    struct cfg_limits limits;
    struct cfg_retry retry;
    struct cfg_health health;
    struct cfg_backend_tls tls;
    struct cfg_backend *backends; /* every one with an address */
    int nbackends;
    struct cfg_backend *named; /* backends whose address is a DNS name: resolved at run
                                * time, they join `backends` of the running snapshot
                                * (cfg_derive) once they have an address */
    int nnamed;
    struct cfg_discover discover;
    int line;
};

struct cfg {
    const char *path; /* the file this was loaded from */

    /* lb */
    uint32_t workers;   /* already resolved: 0 in the file becomes the core count */
    const char *zone;   /* "" when not given */
    const char *region; /* "" when not given */
    uint32_t max_connections;
    const char *user;  /* NULL: do not drop privileges */
    bool watch_config; /* reload by itself when the file (or admin.token_file) changes */
    enum cfg_splice splice;

    /* log */
    enum cfg_level log_level;
    const char *log_access; /* NULL: off; "stdout"; or a file path */
    enum cfg_log_format log_format;

    /* admin */
    struct cfg_addr admin_listen;
    const char *admin_token;      /* NULL: read-only admin; from token or token_file */
    const char *admin_token_file; /* admin.token_file as opened (the token is in admin_token) */

    /* timeouts, milliseconds */
    uint32_t connect_ms;
    uint32_t client_header_ms;
    uint32_t client_idle_ms;
    uint32_t backend_ms;
    uint32_t drain_ms;
    uint32_t tunnel_ms;         /* idle timeout of an upgraded (WebSocket) tunnel */
    uint32_t backend_idle_ms;   /* timeouts.backend_idle: how long an idle keep-alive
                                 * connection to a backend is kept (default "10s") */
    uint32_t shutdown_grace_ms; /* after SIGTERM: /healthz 503 but still accepting, so an
                                 * outer balancer stops sending first (default 0) */

    struct cfg_listener *listeners;
    int nlisteners;
    struct cfg_pool *pools;
    int npools;

    /* DNS, for discover and named backends */
    struct cfg_addr *resolvers; /* none: the nameservers of /etc/resolv.conf */
    int nresolvers;
    struct cfg_zone_net *zone_nets; /* zones by address block; longest prefix wins */
    int nzone_nets;

    void *arena; /* owner of every string and array above (private to cfg.c); shared
                  * by the snapshots cfg_derive() makes from this one */
};

/* Errors collected by cfg_load(), each "FILE:LINE: message". */
struct cfg_errors {
    char **msgs;
    int n;
    int cap;
};

/*
 * Load and validate FILE. Returns the snapshot, or NULL when the file is
 * unreadable or invalid; then errs holds one message per problem found.
 */
struct cfg *cfg_load(const char *path, struct cfg_errors *errs);

/*
 * Load from a string instead of a file; NAME is used in error messages.
 * @include is refused here: there is no directory to resolve it against, and
 * the fuzz driver must not be able to make the loader read arbitrary files.
 */
struct cfg *cfg_load_string(const char *text, const char *name, struct cfg_errors *errs);

/* One more error, for checks made after loading (TLS files): "FILE:LINE: message". */
void cfg_errors_addf(struct cfg_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Drop a reference to CFG (NULL is fine). A loaded snapshot has one; each
 * snapshot derived from it holds another, so its strings outlive it.
 */
void cfg_free(struct cfg *cfg);
void cfg_errors_free(struct cfg_errors *errs); /* frees the messages, leaves errs empty */

/*
 * Parsers shared with the rest of the program. Each returns 0 on success and
 * -1 on a malformed value.
 */
int cfg_parse_duration(const char *s, uint32_t *ms); /* "250ms" "2s" "5m" "1h" */
int cfg_parse_addr(const char *s, struct cfg_addr *out);
int cfg_parse_status_set(const char *s, struct cfg_status_set *out);

/*
 * The same parsers, saying why a value was refused: on -1, *why (when why is
 * not NULL) points to a static phrase such as "port out of range (1-65535)".
 */
int cfg_parse_duration_why(const char *s, uint32_t *ms, const char **why);
int cfg_parse_addr_why(const char *s, struct cfg_addr *out, const char **why);
int cfg_parse_status_set_why(const char *s, struct cfg_status_set *out, const char **why);
int cfg_parse_cidr_why(const char *s, struct cfg_cidr *out, const char **why);

/* Is ADDR (4 bytes for AF_INET, 16 for AF_INET6) inside the block? */
bool cfg_cidr_contains(const struct cfg_cidr *c, int family, const void *addr);

const char *cfg_admin_state_name(enum cfg_admin_state s);
const char *cfg_balance_name(enum cfg_balance b);

/* Same socket address (the text as written may differ)? An address that
 * was never set (len 0) equals nothing. */
static inline bool cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
    return a->len != 0 && a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, or a unix socket: reachable only
 * from this machine. */
bool cfg_addr_is_loopback(const struct cfg_addr *a);

/*
 * A snapshot equal to BASE except for its pools' backends: pool i gets
 * backends[i][0 .. nbackends[i]) (copied, strings too), or keeps BASE's when
 * backends[i] == BASE->pools[i].backends. Every other string and array is
 * BASE's own, so nothing is re-read or re-checked; BASE's memory lives until
 * it and every snapshot derived from it are freed (thread-safe reference
 * counts). Derive from a loaded snapshot, not from a derived one (each would
 * keep its predecessor alive). NULL when out of memory.
 */
struct cfg *cfg_derive(struct cfg *base, struct cfg_backend *const *backends, const int *nbackends);

/*
 * Do A and B have the same backends, pool by pool (name, address, weight,
 * zone, region, state, in order)? Two snapshots of one file then differ in
 * nothing a runtime table uses.
 */
bool cfg_same_backends(const struct cfg *a, const struct cfg *b);

/*
 * The zone (and region, "" if none) of the block in cfg->zone_nets that
 * holds ADDR (an AF_INET or AF_INET6 socket address), the longest prefix
 * winning. False, with *zone and *region untouched, when none holds it.
 */
bool cfg_zone_of(const struct cfg *cfg, const struct sockaddr *addr, const char **zone,
                 const char **region);

/* "A", "AAAA", "SRV". */
const char *cfg_dns_type_name(enum cfg_dns_type t);

/* Find a pool by name; returns its index or -1. */
int cfg_pool_index(const struct cfg *cfg, const char *name);

#endif
