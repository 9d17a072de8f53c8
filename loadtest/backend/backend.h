/*
 * backend.h - lb-backend, the fault-injecting fake HTTP/1.1 backend.
 *
 * One libev loop per worker thread; worker 0 runs on the main thread and
 * owns the signals. A connection lives and dies on the worker that accepted
 * it. What the workers share hangs off struct bk_server: the command line
 * (immutable once the listeners are bound) and the fault settings that
 * /__control changes. Those are guarded by a mutex and published through a
 * generation counter that each worker compares before a request, so the
 * request path takes no lock. Counters are per worker, written only by their
 * owner (relaxed atomics) and summed when /__stats is read.
 *
 * Types and the prototypes the files share; everything else is static.
 */
#ifndef LB_BACKEND_H
#define LB_BACKEND_H

#include <ev.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "lb/core/h1.h"
#include "lb/core/rng.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

#define BK_HEAD_MAX    (16 * 1024)          /* longest request head; longer: 431 */
#define BK_IN_SIZE     (BK_HEAD_MAX + 2048) /* a head plus room to stream its body */
#define BK_OUT_SIZE    (16 * 1024)
#define BK_HEAD_ROOM   4096        /* out space a response head and a small body need */
#define BK_PAT_SIZE    (64 * 1024) /* most pattern bytes per writev */
#define BK_CHUNK_MAX   (16 * 1024) /* chunk size of /bytes?chunked=1 */
#define BK_NAME_MAX    64
#define BK_REQID_MAX   256 /* longer X-Request-Id values are not echoed */
#define BK_MAX_LISTEN  16
#define BK_MAX_THREADS 64
#define BK_BYTES_MAX   (1ULL << 40) /* largest /bytes/N and /drip/N */
#define BK_MS_MAX      3600000.0    /* longest delay of any kind: one hour */

struct bk_worker;
struct bk_server;

/* --- rng.c: xoshiro256**, one per worker, seeded from --seed ---------------- */

struct bk_rng {
    struct rng base; /* common/rng.h */
};

void bk_rng_seed(struct bk_rng *r, uint64_t seed);
uint64_t bk_rng_next(struct bk_rng *r);
double bk_rng_unit(struct bk_rng *r);           /* uniform in [0, 1) */
double bk_rng_normal(struct bk_rng *r);         /* standard normal */
bool bk_rng_chance(struct bk_rng *r, double p); /* true with probability p */
uint64_t bk_rng_hash(const char *s);            /* FNV-1a, for the default seed */

/* --- fault.c: the fault settings, their parser and their JSON --------------- */

enum fault_latency { FAULT_LAT_NONE, FAULT_LAT_FIXED, FAULT_LAT_LOGNORMAL };

struct bk_faults {
    enum fault_latency lat_kind;
    double lat_ms;      /* FIXED: the delay; LOGNORMAL: the median */
    double lat_p99_ms;  /* LOGNORMAL: the 99th percentile */
    double lat_mu;      /* LOGNORMAL: mean of ln(ms) */
    double lat_sigma;   /* LOGNORMAL: standard deviation of ln(ms) */
    double error_rate;  /* 0..1 */
    int error_status;   /* 200..599 */
    double reset_rate;  /* 0..1 */
    bool hang;          /* read requests, never answer */
    bool refuse;        /* listeners (not --control) closed */
    bool expect_ignore; /* no 100 Continue for Expect: 100-continue */
    uint64_t slow_body; /* response body bytes per second, 0: unthrottled */
    int health;         /* status of /healthz */
    double health_delay_ms;
    uint32_t close_after; /* close a connection after this many requests, 0: never */
};

void bk_fault_defaults(struct bk_faults *f);
/* Set KEY to VALUE in *f. Returns 0, or -1 with a message in err. */
int bk_fault_set(struct bk_faults *f, const char *key, const char *value, char *err, size_t errlen);
/* A boolean key, whose value may be left out on the command line. */
bool bk_fault_is_bool(const char *key);
/* The settings as a JSON object plus "\n"; returns its length (snprintf-like). */
int bk_fault_json(const struct bk_faults *f, char *dst, size_t cap);
/* A latency draw in milliseconds, 0 when there is no latency fault. */
double bk_fault_latency_ms(const struct bk_faults *f, struct bk_rng *r);
/* Parse a duration ("50ms", "2s", "250us", bare number = ms) into ms. */
int bk_fault_duration(const char *s, double *ms);

/* --- route.c: which endpoint a request target names ------------------------ */

enum route_kind {
    ROUTE_DEFAULT,
    ROUTE_ECHO,
    ROUTE_BYTES,
    ROUTE_STATUS,
    ROUTE_SLEEP,
    ROUTE_DRIP,
    ROUTE_WS,
    ROUTE_HEALTH,
    ROUTE_STATS,
    ROUTE_CONTROL,
    ROUTE_BAD,       /* a known endpoint with an invalid argument: 400 */
    ROUTE_NOT_FOUND, /* not served on this listener: 404 */
};

struct bk_route {
    enum route_kind kind;
    uint64_t n;         /* BYTES, DRIP: byte count; STATUS: status; SLEEP: ms */
    uint64_t ms;        /* DRIP: ms between bytes */
    bool chunked;       /* BYTES: ?chunked=1 */
    bool close;         /* BYTES: ?close=1 */
    uint32_t query_off; /* the query (after '?') within the target */
    uint32_t query_len;
};

void bk_route_parse(const char *target, size_t len, struct bk_route *r);
/* /healthz, /__stats and /__control: no request faults, served on --control too. */
bool bk_route_is_admin(enum route_kind k);

/* --- stats.c: counters ------------------------------------------------------ */

enum stat_id {
    ST_REQUESTS,      /* answered, not counting admin endpoints */
    ST_CONNECTIONS,   /* accepted */
    ST_ACTIVE,        /* open now (a gauge, never reset) */
    ST_HEALTH_CHECKS, /* /healthz answered */
    ST_BYTES_IN,
    ST_BYTES_OUT,
    ST_1XX,
    ST_2XX,
    ST_3XX,
    ST_4XX,
    ST_5XX,
    ST_ERRORS, /* injected by error_rate */
    ST_RESETS, /* injected by reset_rate */
    ST_HANGS,  /* requests left unanswered by hang */
    ST__COUNT,
};

struct bk_stats {
    _Atomic uint64_t v[ST__COUNT];
};

/* Only the owning worker writes its counters: a relaxed load and store is enough. */
static inline void bk_stats_add(struct bk_stats *s, enum stat_id id, uint64_t n)
{
    uint64_t v = atomic_load_explicit(&s->v[id], memory_order_relaxed);
    atomic_store_explicit(&s->v[id], v + n, memory_order_relaxed);
}

void bk_stats_response(struct bk_stats *s, int status);
/* Sums over the workers since the last reset (ST_ACTIVE: current value). */
void bk_stats_totals(struct bk_server *srv, uint64_t tot[ST__COUNT]);
/* With srv->lock held: the totals start again from zero. */
void bk_stats_reset_locked(struct bk_server *srv);
/* The /__stats body; returns its length (snprintf-like). */
int bk_stats_json(struct bk_server *srv, char *dst, size_t cap);

/* --- listen.c: addresses and listening sockets ------------------------------ */

struct bk_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[128]; /* "127.0.0.1:9001", "[::1]:9001", "unix:/path" */
};

struct bk_listener {
    ev_io io;
    ev_timer retry; /* accepting paused after EMFILE and the like */
    struct bk_worker *w;
    struct bk_addr *addr; /* in the server's config; port 0 is resolved on first bind */
    int fd;               /* -1 while closed (refuse) */
    bool control;         /* the --control listener: admin endpoints only, never closed */
};

int bk_lsn_parse(const char *text, struct bk_addr *a, char *err, size_t errlen);
void bk_lsn_format(const struct sockaddr_storage *ss, socklen_t len, char *dst, size_t cap);
void bk_lsn_init(struct bk_listener *l, struct bk_worker *w, struct bk_addr *a, bool control);
int bk_lsn_open(struct bk_listener *l, bool reuseport, char *err, size_t errlen);
void bk_lsn_close(struct bk_listener *l);
/* Close (refuse) or reopen the worker's listeners other than --control. */
void bk_lsn_refuse(struct bk_worker *w, bool refuse);
bool bk_lsn_is_loopback(const struct sockaddr_storage *ss);

/* --- conn.c: a client connection -------------------------------------------- */

enum conn_phase {
    CONN_HEAD,    /* reading a request head */
    CONN_BODY,    /* reading the request body */
    CONN_WAIT,    /* delaying the answer */
    CONN_SEND,    /* producing the response */
    CONN_WS,      /* echoing WebSocket frames */
    CONN_HANG,    /* discarding input, never answering */
    CONN_CLOSING, /* draining the out queue before closing */
    CONN_LINGER,  /* written side shut, discarding input until FIN */
};

/* What a step of the state machine needs next. */
enum conn_step { STEP_NEXT, STEP_READ, STEP_WRITE, STEP_WAIT, STEP_CLOSE, STEP_RESET };

enum bk_resp_body { RESP_NONE, RESP_MEM, RESP_PATTERN, RESP_ECHO };

/* One request and its answer; zeroed when a request head is parsed. */
struct bk_exchange {
    struct bk_route route;
    int reqid;          /* index of a short enough X-Request-Id header, -1: none */
    bool faulty;        /* request faults apply (not an admin endpoint) */
    bool error;         /* the error fault hit: answer error_status */
    bool expect_ignore; /* the expect=ignore fault */
    bool head_only;     /* HEAD request: no body in the answer */
    bool started;       /* the response head is queued */
    bool close;         /* close the connection after this answer */
    bool hashing;       /* the request body goes into c->sha */
    double delay_ms;    /* latency fault + /sleep or health_delay */
    uint32_t close_after;
    uint64_t body_left; /* Content-Length body bytes still to read */
    uint64_t body_len;  /* decoded request body bytes read */
    struct h1_chunk chunk;

    enum bk_resp_body kind;
    int status;
    const char *mem;        /* RESP_MEM: body bytes that outlive the answer */
    uint64_t left;          /* body bytes still to produce */
    uint64_t off;           /* RESP_PATTERN: pattern offset of the next byte */
    bool chunked;           /* RESP_PATTERN: chunked framing */
    bool chunk_open;        /* a chunk's data went out, its CRLF did not */
    bool drip;              /* pace one byte at a time */
    double rate;            /* body bytes per second, 0: unpaced */
    double pace_t0;         /* ev_now() when the paced body started */
    uint64_t paced;         /* body bytes produced since pace_t0 */
    uint32_t bk_echo_piece; /* RESP_ECHO: cursor into the JSON */
    uint32_t echo_off;
};

struct bk_conn {
    ev_io io;
    ev_timer timer; /* idleness, or a delay when delay_armed */
    struct bk_worker *w;
    struct bk_conn *prev, *next; /* worker's live list; next also links spares */
    int fd;
    int events; /* of the io watcher, 0 while stopped */
    enum conn_phase phase;
    bool control;     /* accepted on the --control listener */
    bool readable;    /* more input may be waiting in the socket */
    bool peer_eof;    /* the peer shut its side: no more input */
    bool delay_armed; /* the timer measures a delay */
    bool timer_fired; /* that delay ran out */
    uint32_t nreq;    /* request heads read on this connection */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    EVP_MD_CTX *sha; /* /echo body digest, allocated on first use */

    struct h1_request req; /* the current request; points into in[] */
    size_t scanned;        /* h1_parse_request's resume point */
    uint32_t head_off;     /* the current head is in[head_off, head_off + head_len) */
    uint32_t head_len;     /* 0 between requests */
    struct bk_exchange x;

    uint64_t ws_left; /* payload bytes left in the current frame */
    uint8_t ws_mask[4];
    uint8_t ws_moff; /* mask index of the next payload byte */
    uint8_t ws_op;   /* opcode echoed for the current frame */
    bool ws_discard; /* the current frame is not echoed (pong) */
    bool ws_in_frame;

    uint32_t in_start, in_end;   /* unread input is in[in_start, in_end) */
    uint32_t out_start, out_end; /* queued output: out[out_start, out_end) ... */
    uint64_t pat_off, pat_len;   /* ... then pat_len pattern bytes from pat_off */
    char small[128];             /* a short formatted body */
    char echo_tail[384];         /* the end of the /echo JSON */
    char in[BK_IN_SIZE];
    char out[BK_OUT_SIZE];
};

int bk_conn_new(struct bk_worker *w, int fd, const struct sockaddr_storage *peer, socklen_t len,
                bool control);
void bk_conn_free(struct bk_conn *c);
void bk_conn_release_spares(struct bk_worker *w);
/* Free bytes at the end of the out queue (compacts it); 0 while pattern bytes are queued. */
size_t bk_conn_out_room(struct bk_conn *c);
/* Append n bytes to the out queue; false when they do not fit. */
bool bk_conn_out_put(struct bk_conn *c, const void *p, size_t n);
/* Index of the first header called NAME, -1 if none. */
int bk_conn_header(const struct bk_conn *c, const char *name);
/* Arm the timer as a delay of ms; the phase handler sees x.timer_fired after it. */
void bk_conn_delay(struct bk_conn *c, double ms);
/* The current request is answered: next request, or close. */
int bk_conn_finish(struct bk_conn *c);
void bk_conn_log(const struct bk_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- resp.c: answers -------------------------------------------------------- */

/* Queue the answer to the current request (SEND phase, head not yet queued). */
int bk_resp_start(struct bk_conn *c);
/* Produce more of the body (SEND phase). */
int bk_resp_produce(struct bk_conn *c);
/* Status line and the headers every answer carries. */
void bk_resp_begin(struct bk_conn *c, int status);
/* Connection header and the blank line. */
void bk_resp_end(struct bk_conn *c);
/* A complete answer with a short text body "STATUS REASON\n" (or none for 204/304). */
int bk_resp_simple(struct bk_conn *c, int status, const char *extra);
/* The head of a JSON answer of len bytes. */
void bk_resp_json_head(struct bk_conn *c, int status, uint64_t len);
/* A complete answer with a JSON body already formatted. */
int bk_resp_json(struct bk_conn *c, int status, const char *body, size_t len);
/* A 400 or 431 for an unparsable request; the connection closes after it. */
int bk_resp_fail(struct bk_conn *c, int status);
const char *bk_resp_reason(int status);

/* --- echo.c: /echo ---------------------------------------------------------- */

int bk_echo_start(struct bk_conn *c);
/* Write up to cap bytes of the JSON at the cursor; dst NULL counts. Returns bytes. */
size_t bk_echo_emit(struct bk_conn *c, char *dst, size_t cap);

/* --- ws.c: /ws -------------------------------------------------------------- */

int bk_ws_start(struct bk_conn *c);
int bk_ws_step(struct bk_conn *c);

/* --- control.c: /__control -------------------------------------------------- */

int bk_ctl_answer(struct bk_conn *c);

/* --- server.c: the process and its workers ---------------------------------- */

struct bk_config {
    struct bk_addr listen[BK_MAX_LISTEN];
    int nlisten;
    struct bk_addr control;
    bool has_control;
    const char *name;
    const char *zone;
    char body[BK_NAME_MAX + 2]; /* NAME "\n": the default answer's body */
    size_t body_len;
    uint64_t seed;
    bool seeded; /* --seed given; else the seed is a hash of the name */
    int threads;
    double idle_timeout; /* seconds */
    bool verbose;
    struct bk_faults faults; /* as given on the command line */
};

struct bk_worker {
    struct ev_loop *loop;
    struct bk_server *srv;
    int id;
    pthread_t thread;
    ev_async wake; /* faults changed or stop requested */
    ev_signal sigterm, sigint;
    struct bk_listener lst[BK_MAX_LISTEN + 1];
    int nlst;
    struct bk_faults faults; /* this worker's copy of srv->faults */
    unsigned faults_gen;     /* the generation of that copy */
    struct bk_rng rng;
    struct bk_stats stats;
    struct bk_conn *live;  /* open connections */
    struct bk_conn *spare; /* closed connections kept for reuse */
    int nspare;
    size_t prefix_len;
    char prefix[2 * BK_NAME_MAX + 32]; /* "X-Backend: NAME\r\nX-Zone: ZONE\r\n" */
    char pattern[BK_PAT_SIZE + 32];    /* byte i is 'a' + i % 26 */
};

struct bk_server {
    struct bk_config cfg;
    pthread_mutex_t lock;    /* guards faults and base */
    struct bk_faults faults; /* current settings */
    atomic_uint gen;         /* bumped after each change of faults */
    atomic_bool stopping;
    uint64_t base[ST__COUNT]; /* totals at the last reset */
    double started;           /* ev_time() at start */
    struct bk_worker *workers;
    int nworkers;
};

int bk_srv_init(struct bk_server *s, char *err, size_t errlen);
int bk_srv_run(struct bk_server *s);
void bk_srv_deinit(struct bk_server *s);
/* The worker's fault settings, refreshed if /__control changed them. */
const struct bk_faults *bk_srv_faults(struct bk_worker *w);
/* Change the settings under the lock: edit returns 0 to publish, -1 to keep them. */
int bk_srv_edit_faults(struct bk_server *s,
                       int (*edit)(struct bk_faults *f, bool *reset, void *arg), void *arg,
                       struct bk_faults *now);
void bk_srv_log(const struct bk_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
