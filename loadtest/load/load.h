/*
 * load.h - lb-load, the load generator: types and the prototypes its files share.
 *
 *   main.c    the process: options, workers on threads, signals, progress, report
 *   cli.c     cli_     command line, URL (loopback only), durations
 *   keys.c    keys_    partition-key distributions (uniform, Zipf) and the PRNG
 *   tally.c   tally_   what a worker counts: latency, statuses, errors, backends
 *   report.c  report_  the result as text or JSON
 *   runner.c  runner_  one worker: its loop, which request goes next and when
 *   client.c  client_  one connection: connect, send, parse the response
 *
 * A worker (one thread, one libev loop) owns its clients, its tally and a
 * lane of the request sequence (requests k = lane, lane + lanes, ...), so
 * workers share nothing mutable: the options, key table and request body
 * are read-only once the threads start, and the main thread reads only the
 * per-worker progress counters (relaxed atomics) until the threads are
 * joined. No memory is allocated per request.
 */
#ifndef LB_LOAD_H
#define LB_LOAD_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "loadtest/common/hdr.h"
#include "loadtest/common/sched.h"
#include "lb/core/clock.h"
#include "lb/core/h1.h"
#include "lb/core/rng.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

#define LD_MAX_THREADS 64
#define LD_MAX_CONNS   100000
#define LD_MAX_HEADERS 64          /* -H options */
#define LD_HEAD_MAX    8192        /* the request head template */
#define LD_IN_SIZE     16384       /* per connection: a response head must fit */
#define LD_TAIL_MAX    320         /* key header line and the final CRLF */
#define LD_BACKENDS    64          /* distinct X-Backend values kept; more: "other" */
#define LD_NAME_MAX    64          /* longest X-Backend value kept, with the NUL */
#define LD_KEYS_MAX    10000000    /* --keys */
#define LD_BODY_MAX    (64u << 20) /* --body-size */
#define LD_MS          1000000ull
#define LD_SEC         1000000000ull

/* --- cli.c ------------------------------------------------------------------ */

enum ld_key_dist { LD_KEYS_NONE, LD_KEYS_UNIFORM, LD_KEYS_ZIPF };

struct ld_opts {
    const char *url; /* as given */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[96];    /* Host header: "127.0.0.1:8080", "[::1]:8080" */
    const char *path; /* request target, into argv ("/" when the URL has none) */
    const char *method;
    bool head;            /* method is HEAD: responses have no body */
    unsigned connections; /* total over the workers; open loop: the most open at once */
    unsigned threads;
    uint64_t duration_ns; /* 0: none */
    uint64_t requests;    /* -n; 0: none */
    double rate;          /* requests/s; 0: closed loop */
    uint64_t ramp_ns;
    uint64_t timeout_ns; /* per request */
    bool new_conn;       /* Connection: close, one connection per request */
    bool json;
    const char *headers[LD_MAX_HEADERS]; /* "Name: value", validated */
    unsigned nheaders;
    bool has_host; /* a -H Host: replaces ours */
    uint64_t body_size;
    uint32_t keys; /* K partition keys; 0: no key header */
    enum ld_key_dist key_dist;
    double zipf_s;
    const char *key_header;
    uint64_t seed;
};

/*
 * Parse the command line into *o. Returns 0; 1 when the help was printed;
 * -1 with a message in err (usage error).
 */
int cli_parse(int argc, char **argv, struct ld_opts *o, char *err, size_t errlen);
void cli_usage(FILE *f);
/* "10s", "250ms", "2m", "1h", "500us"; a bare number is seconds. Returns 0 or -1. */
int cli_duration(const char *s, uint64_t *ns);
/* The URL: http://127.0.0.1:PORT/path or http://[::1]:PORT/path, nothing else. */
int cli_url(const char *url, struct ld_opts *o, char *err, size_t errlen);

/* --- keys.c ----------------------------------------------------------------- */

struct keys_rng {
    struct rng base; /* lb/core/rng.h */
};

struct keys {
    enum ld_key_dist dist;
    uint32_t k;
    double *cdf; /* ZIPF: cdf[i] = P(key <= i), k entries; read-only once built */
};

void keys_rng_seed(struct keys_rng *r, uint64_t seed);
uint64_t keys_rng_next(struct keys_rng *r);
/* Returns 0, or -1 with a message in err. */
int keys_init(struct keys *ks, enum ld_key_dist dist, uint32_t k, double s, char *err,
              size_t errlen);
void keys_deinit(struct keys *ks);
/* A key in 0..k-1 (0 the most frequent under Zipf). */
uint32_t keys_pick(const struct keys *ks, struct keys_rng *r);

/* --- tally.c ---------------------------------------------------------------- */

enum ld_err { LD_E_CONNECT, LD_E_RESET, LD_E_TIMEOUT, LD_E_PARSE, LD_E_OTHER, LD_E__COUNT };

struct tally_backend {
    char name[LD_NAME_MAX];
    uint32_t len;
    uint64_t count;
};

struct tally {
    struct hdr lat;     /* latency of complete responses, us */
    uint64_t responses; /* complete responses (reported as "requests") */
    uint64_t status[5]; /* by class: 1xx .. 5xx */
    uint64_t errors[LD_E__COUNT];
    uint64_t connections; /* connections established */
    struct tally_backend backends[LD_BACKENDS];
    unsigned nbackends;
    uint64_t backend_other; /* responses from names beyond LD_BACKENDS or too long */
    /* open loop */
    uint64_t scheduled;   /* requests due during the run */
    uint64_t sent;        /* requests written */
    uint64_t dropped;     /* never sent: waited past --timeout for a connection */
    uint64_t backlog_max; /* most requests due and waiting for a connection */
};

void tally_init(struct tally *t);
/* Count one response from X-Backend value name[0..len). */
void tally_backend(struct tally *t, const char *name, size_t len);
void tally_merge(struct tally *dst, const struct tally *src);
const char *tally_err_name(enum ld_err e);

/* --- report.c --------------------------------------------------------------- */

struct report_run {
    const struct ld_opts *o;
    const struct tally *t;
    double duration_s; /* start to the last response */
    bool interrupted;  /* stopped by a signal */
};

void report_text(FILE *f, const struct report_run *r);
void report_json(FILE *f, const struct report_run *r);

/* --- client.c --------------------------------------------------------------- */

struct runner;

/*
 *   state       waits for                                 timer
 *   CLOSED      (no socket) a request to connect for      -
 *   CONNECTING  the socket to become writable             request timeout
 *   SENDING     room for the rest of the request          request timeout
 *   WAITING     the response (head, then body)            request timeout
 *   IDLE        (keep-alive) the next request             -
 *   CLOSING     the server's FIN after a final response   request timeout
 *   RETRY       a failure met inside a call, so that the  0 s
 *               next request starts on a fresh stack
 *
 * The response is read in every state from connected on (a server may
 * answer before the request is all sent); in_body tells head from body.
 */
enum client_state {
    CL_CLOSED,
    CL_CONNECTING,
    CL_SENDING,
    CL_WAITING,
    CL_IDLE,
    CL_CLOSING,
    CL_RETRY,
};

struct client {
    ev_io rio;   /* active while connected */
    ev_io wio;   /* active while connecting or blocked on a write */
    ev_timer tm; /* the request timeout, or RETRY's deferral */
    struct runner *rn;
    struct client *next, *prev; /* the runner's idle or free list */
    int fd;
    enum client_state st;

    uint64_t t0_ns;         /* latency origin: scheduled time (open loop) or start */
    size_t out_off;         /* request bytes written so far */
    char tail[LD_TAIL_MAX]; /* the key header line and the head's final CRLF */
    uint32_t tail_len;

    char *in;        /* LD_IN_SIZE bytes, a slice of the runner's block */
    uint32_t in_len; /* bytes in in[] */
    uint32_t in_off; /* bytes of in[] consumed */
    size_t scanned;  /* h1_parse_response resume point */
    bool in_body;    /* the head is parsed, the body is being read */
    enum h1_body body;
    uint64_t body_left; /* LENGTH: bytes to go */
    struct h1_chunk chunk;
    int status;
    bool keep_alive;      /* the connection can carry another request */
    uint32_t backend_len; /* X-Backend value length; LD_NAME_MAX: too long; UINT32_MAX: none */
    char backend[LD_NAME_MAX];
};

void client_init(struct client *c, struct runner *rn, char *in);
/* Start the claimed request with latency origin t0_ns: connect first if needed. */
void client_begin(struct client *c, uint64_t t0_ns);
/* Close the socket quietly (idle, or the run is over). */
void client_close(struct client *c);

/* --- runner.c --------------------------------------------------------------- */

/* What the workers share, read-only while they run. */
struct runner_shared {
    const struct ld_opts *o;
    const struct keys *keys;
    const char *head; /* request head template, without the final CRLF */
    size_t head_len;
    const char *body;  /* --body-size bytes */
    uint64_t start_ns; /* the run's start; request 0 of the schedule is due then */
    struct ev_loop *main_loop;
    ev_async *main_wake; /* sent when a worker finishes */
};

struct runner {
    struct ev_loop *loop;
    const struct runner_shared *sh;
    const struct ld_opts *o;
    unsigned lane, lanes; /* this worker's share of the request sequence */
    pthread_t thread;

    struct client *clients; /* nclients slots */
    unsigned nclients;
    char *inbuf;         /* nclients * LD_IN_SIZE */
    struct client *idle; /* open loop: connected, without a request (LIFO) */
    struct client *free; /* open loop: CLOSED clients, slots for new connections */
    unsigned inflight;   /* clients with a claimed request */
    uint64_t done;       /* requests ended: responses + errors */

    uint64_t quota;   /* requests this lane may start; UINT64_MAX: unbounded */
    uint64_t claimed; /* requests started (closed loop) or taken off the schedule */
    bool stopping;    /* no new request may start */
    bool finished;
    bool dispatching; /* in runner_dispatch: nested calls return at once */

    bool open_loop;
    struct sched sched;
    int tfd; /* timerfd: the next due time or backlog expiry */
    ev_io tfd_io;
    uint64_t armed_ns; /* what tfd is armed for; 0: disarmed */

    ev_timer stop_tm;     /* closed loop: the end of --duration */
    ev_async stop_async;  /* from the main thread: a signal arrived */
    _Atomic int stop_req; /* 1: stop starting requests; 2: stop now */

    struct tally *tally;
    struct h1_response resp; /* parser output, used within one call */
    struct keys_rng rng;
    uint64_t end_ns; /* when the last request ended */

    _Atomic uint64_t pub_done; /* responses + errors, for the progress line */
    _Atomic uint64_t pub_ok;   /* responses */
    _Atomic bool pub_finished;
};

/* Returns 0, or -1 with a message in err. */
int runner_init(struct runner *rn, const struct runner_shared *sh, unsigned lane, unsigned lanes,
                char *err, size_t errlen);
void runner_deinit(struct runner *rn);
int runner_start(struct runner *rn);           /* its thread; 0 or -errno */
void runner_stop(struct runner *rn, bool now); /* from another thread */

/* Called by a client: its request ended (response or error); what next? */
void runner_next(struct runner *rn, struct client *c);
/* Called by a client: its idle connection went away (it is CLOSED now). */
void runner_idle_gone(struct runner *rn, struct client *c);
/* Count a finished request in the progress counters. */
void runner_count(struct runner *rn);
/* The request head up to its final CRLF (the client adds the key line and
 * the CRLF). Returns its length, or -1 when it does not fit in cap. */
int runner_build_head(const struct ld_opts *o, char *buf, size_t cap);

static inline uint64_t ld_now_ns(void)
{
    return clock_mono_ns();
}

#endif
