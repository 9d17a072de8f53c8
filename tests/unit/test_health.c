/*
 * test_health.c - health accounting and the checker against real sockets.
 *
 * The rise/fall counter is driven by tables: a string of results ('P' pass,
 * 'F' fail) and the health expected after each one ('u' up, 'd' down), for
 * several rise/fall pairs, checking the counter's range and the counts.
 *
 * The checker tests run hc against a fake backend served by a thread of this
 * test on 127.0.0.1 (or a unix socket): it answers each check as told (a
 * status, a hang, a close, garbage, a huge head, an interim 100) and records
 * the request it got. Every wait is a bounded poll.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "health/health.h"
#include "lb/core/clock.h"
#include "lb/core/log.h"

/* --- accounting ---------------------------------------------------------- */

/*
 * Apply RESULTS to S one by one; after each, health must be the one named by
 * the same position of EXPECT ('u' up, 'd' down, '?' unknown) and the
 * counter within the range of that health.
 */
static void run(struct hc_status *s, uint32_t rise, uint32_t fall, const char *results,
                const char *expect)
{
    size_t n = strlen(results);
    int r = rise < 1 ? 1 : (int)rise, f = fall < 1 ? 1 : (int)fall;

    assert_int_equal(n, strlen(expect));
    for (size_t i = 0; i < n; i++) {
        int before = atomic_load(&s->health);
        bool changed = hc_account(s, results[i] == 'P', rise, fall);
        int h = atomic_load(&s->health);
        int c = atomic_load(&s->counter);
        int want = expect[i] == 'u' ? HC_UP : expect[i] == 'd' ? HC_DOWN : HC_UNKNOWN;

        if (h != want)
            print_error("rise %u fall %u results \"%s\": after #%zu health %s, want %s\n", rise,
                        fall, results, i, hc_state_name(h), hc_state_name(want));
        assert_int_equal(h, want);
        assert_int_equal(changed, h != before);
        if (h == HC_UP) {
            assert_true(c >= r);
            assert_true(c <= r + f - 1);
        } else {
            assert_true(c >= 0);
            assert_true(c <= r - 1);
        }
    }
}

static void test_first_result_decides(void **state)
{
    struct hc_status s;

    (void)state;
    hc_status_init(&s, HC_UNKNOWN);
    assert_int_equal(atomic_load(&s.health), HC_UNKNOWN);
    assert_true(hc_account(&s, true, 2, 3));
    assert_int_equal(atomic_load(&s.health), HC_UP);
    assert_int_equal(atomic_load(&s.counter), 4); /* rise + fall - 1 */
    assert_int_equal(atomic_load(&s.transitions), 1);
    assert_int_equal(atomic_load(&s.checks_ok), 1);
    assert_int_equal(atomic_load(&s.checks_failed), 0);

    hc_status_init(&s, HC_UNKNOWN);
    assert_true(hc_account(&s, false, 2, 3));
    assert_int_equal(atomic_load(&s.health), HC_DOWN);
    assert_int_equal(atomic_load(&s.counter), 0);
    assert_int_equal(atomic_load(&s.transitions), 1);
    assert_int_equal(atomic_load(&s.checks_ok), 0);
    assert_int_equal(atomic_load(&s.checks_failed), 1);

    /* with rise = fall = 1 too, and with large ones */
    hc_status_init(&s, HC_UNKNOWN);
    run(&s, 1, 1, "P", "u");
    hc_status_init(&s, HC_UNKNOWN);
    run(&s, 100, 100, "F", "d");
    hc_status_init(&s, HC_UNKNOWN);
    run(&s, 100, 100, "P", "u");
}

struct table_row {
    uint32_t rise, fall;
    const char *results, *expect;
};

static void test_rise_fall_tables(void **state)
{
    static const struct table_row rows[] = {
        /* up stays up on fall-1 failures and goes down on the fall-th */
        {2, 3, "PFF", "uuu"},
        {2, 3, "PFFF", "uuud"},
        {1, 1, "PF", "ud"},
        {5, 1, "PF", "ud"},
        {1, 4, "PFFFF", "uuuud"},
        /* down -> up needs rise passes */
        {2, 3, "FP", "dd"},
        {2, 3, "FPP", "ddu"},
        {3, 2, "FPPP", "dddu"},
        {1, 3, "FP", "du"},
        {4, 1, "FPPPP", "ddddu"},
        /* interleaved results reset the run */
        {2, 3, "PFFPFF", "uuuuuu"},
        {2, 3, "PFFPFFF", "uuuuuud"},
        {3, 2, "FPPFPP", "dddddd"},
        {3, 2, "FPPFPPP", "ddddddu"},
        {2, 2, "PFPFPFPF", "uuuuuuuu"},
        {2, 2, "FPFPFPFP", "dddddddd"},
        /* full cycles */
        {2, 3, "PFFFPPFFFPP", "uuudduuuddu"},
        {1, 1, "PFPFPF", "ududud"},
        {3, 3, "PPPFFFPPPFFF", "uuuuuddduuud"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct hc_status s;

        hc_status_init(&s, HC_UNKNOWN);
        run(&s, rows[i].rise, rows[i].fall, rows[i].results, rows[i].expect);
    }
}

static void test_counter_values(void **state)
{
    struct hc_status s;
    /* rise 2, fall 3: up is 2..4, down 0..1 */
    static const struct {
        char r;
        int counter;
        int health;
    } steps[] = {
        {'P', 4, HC_UP},   {'F', 3, HC_UP},   {'F', 2, HC_UP},   {'P', 4, HC_UP},
        {'F', 3, HC_UP},   {'F', 2, HC_UP},   {'F', 0, HC_DOWN}, {'F', 0, HC_DOWN},
        {'P', 1, HC_DOWN}, {'F', 0, HC_DOWN}, {'P', 1, HC_DOWN}, {'P', 4, HC_UP},
        {'P', 4, HC_UP},
    };

    (void)state;
    hc_status_init(&s, HC_UNKNOWN);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        hc_account(&s, steps[i].r == 'P', 2, 3);
        assert_int_equal(atomic_load(&s.counter), steps[i].counter);
        assert_int_equal(atomic_load(&s.health), steps[i].health);
    }
    assert_int_equal(atomic_load(&s.checks_ok), 6);
    assert_int_equal(atomic_load(&s.checks_failed), 7);
    assert_int_equal(atomic_load(&s.transitions), 3); /* unknown->up, up->down, down->up */
}

static void test_counts(void **state)
{
    struct hc_status s;
    uint64_t changes = 0;

    (void)state;
    hc_status_init(&s, HC_UNKNOWN);
    for (int i = 0; i < 1000; i++) /* 10 passes, 10 failures, ... */
        changes += hc_account(&s, (i / 10) % 2 == 0, 2, 3);
    assert_int_equal(atomic_load(&s.checks_ok), 500);
    assert_int_equal(atomic_load(&s.checks_failed), 500);
    assert_int_equal(atomic_load(&s.transitions), changes);
    assert_int_equal(changes, 100); /* first up, then one change per run of 10 */
    assert_int_equal(atomic_load(&s.last_change_ms), 0); /* the checker sets it, not hc_account */
}

static void test_out_of_range_counter(void **state)
{
    struct hc_status s;

    (void)state;
    /* up set from outside (health.type was "off"): counter 0 counts as a full run */
    hc_status_init(&s, HC_UP);
    run(&s, 2, 3, "FF", "uu");
    run(&s, 2, 3, "F", "d");

    /* rise/fall shrank on a reload: a counter above the new maximum is clamped */
    hc_status_init(&s, HC_UNKNOWN);
    run(&s, 10, 10, "P", "u");
    assert_int_equal(atomic_load(&s.counter), 19);
    run(&s, 2, 2, "F", "u");
    assert_int_equal(atomic_load(&s.counter), 2);
    run(&s, 2, 2, "F", "d");

    /* a down counter above rise-1 (rise shrank) */
    hc_status_init(&s, HC_UNKNOWN);
    run(&s, 10, 10, "FPPPPP", "dddddd");
    assert_int_equal(atomic_load(&s.counter), 5);
    run(&s, 3, 2, "P", "u"); /* clamped to 2, one more pass reaches rise */

    /* rise and fall of 0 count as 1 */
    hc_status_init(&s, HC_UNKNOWN);
    run(&s, 0, 0, "PFPF", "udud");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(hc_state_name(HC_UP), "up");
    assert_string_equal(hc_state_name(HC_DOWN), "down");
    assert_string_equal(hc_state_name(HC_UNKNOWN), "unknown");
    assert_string_equal(hc_state_name((enum hc_state)7), "unknown");
    assert_string_equal(hc_fail_name(HCF_CONNECT_REFUSED), "connect refused");
    assert_string_equal(hc_fail_name(HCF_CONNECT_TIMEOUT), "connect timeout");
    assert_string_equal(hc_fail_name(HCF_READ_TIMEOUT), "read timeout");
    assert_string_equal(hc_fail_name(HCF_BAD_STATUS), "bad status");
    assert_string_equal(hc_fail_name(HCF_TLS), "tls error");
    for (int f = 0; f < HCF_COUNT; f++)
        assert_non_null(hc_fail_name((enum hc_fail)f));
    assert_string_equal(hc_fail_name((enum hc_fail)99), "unknown");
}

/* --- a fake backend ------------------------------------------------------ */

enum srv_mode {
    SRV_STATUS,  /* answer `status` with Content-Length: 0 */
    SRV_HANG,    /* read the request, never answer */
    SRV_CLOSE,   /* accept and close at once */
    SRV_GARBAGE, /* not HTTP */
    SRV_BIGHEAD, /* a 200 whose head is larger than 4 KiB */
    SRV_INTERIM, /* 100 Continue, then 204 */
};

struct srv {
    int fd;
    pthread_t thread;
    _Atomic int mode;
    _Atomic int status;
    _Atomic bool stop;
    _Atomic int accepted;
    pthread_mutex_t lock;
    char last_req[1024]; /* the last request head received (lock) */
    struct cfg_addr addr;
    char path[108]; /* unix socket path, "" for TCP */
};

/* Read a request head into buf within 2 s; returns its length or -1. */
static int srv_read_head(struct srv *s, int fd, char *buf, size_t cap)
{
    size_t n = 0;
    int64_t deadline = clock_mono_ms() + 2000;

    while (n + 1 < cap && clock_mono_ms() < deadline && !atomic_load(&s->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = 0;
        if (strstr(buf, "\r\n\r\n"))
            return (int)n;
    }
    return -1;
}

static void srv_write(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Wait until the peer closes, or stop, or 3 s. */
static void srv_hold(struct srv *s, int fd)
{
    char tmp[256];
    int64_t deadline = clock_mono_ms() + 3000;

    while (clock_mono_ms() < deadline && !atomic_load(&s->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) > 0 && read(fd, tmp, sizeof(tmp)) <= 0)
            return;
    }
}

static void srv_serve(struct srv *s, int fd)
{
    char req[1024];
    char out[8192];
    int mode = atomic_load(&s->mode);

    if (mode == SRV_CLOSE)
        return;
    if (srv_read_head(s, fd, req, sizeof(req)) < 0)
        return;
    pthread_mutex_lock(&s->lock);
    memcpy(s->last_req, req, sizeof(req));
    pthread_mutex_unlock(&s->lock);
    switch (mode) {
    case SRV_STATUS:
        snprintf(out, sizeof(out), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
                 atomic_load(&s->status));
        srv_write(fd, out, strlen(out));
        break;
    case SRV_HANG:
        srv_hold(s, fd);
        break;
    case SRV_GARBAGE:
        srv_write(fd, "SSH-2.0-OpenSSH\r\n\r\n", 19);
        break;
    case SRV_BIGHEAD: {
        size_t n = (size_t)snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\n");
        while (n < 6000)
            n += (size_t)snprintf(out + n, sizeof(out) - n, "X-Filler: %0100d\r\n", 7);
        n += (size_t)snprintf(out + n, sizeof(out) - n, "Content-Length: 0\r\n\r\n");
        srv_write(fd, out, n);
        break;
    }
    case SRV_INTERIM:
        snprintf(out, sizeof(out), "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        srv_write(fd, out, strlen(out));
        break;
    }
    srv_hold(s, fd); /* let the checker close first */
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;

    while (!atomic_load(&s->stop)) { /* bounded by stop, set by srv_stop() */
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c == -1)
            continue;
        atomic_fetch_add(&s->accepted, 1);
        srv_serve(s, c);
        close(c);
    }
    return NULL;
}

/* A fake backend on 127.0.0.1 (unix_path NULL) or on a unix socket. */
static struct srv *srv_start(const char *unix_path, int mode, int status)
{
    struct srv *s = calloc(1, sizeof(*s));
    char text[160];

    assert_non_null(s);
    atomic_init(&s->mode, mode);
    atomic_init(&s->status, status);
    pthread_mutex_init(&s->lock, NULL);
    if (unix_path) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(s->path, sizeof(s->path), "%s", unix_path);
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", unix_path);
        unlink(unix_path);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_not_equal(s->fd, -1);
        assert_int_equal(bind(s->fd, (struct sockaddr *)&un, sizeof(un)), 0);
        snprintf(text, sizeof(text), "unix:%s", unix_path);
    } else {
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(in);
        int one = 1;
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_not_equal(s->fd, -1);
        setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        assert_int_equal(bind(s->fd, (struct sockaddr *)&in, sizeof(in)), 0);
        assert_int_equal(getsockname(s->fd, (struct sockaddr *)&in, &len), 0);
        snprintf(text, sizeof(text), "127.0.0.1:%d", ntohs(in.sin_port));
    }
    assert_int_equal(listen(s->fd, 128), 0);
    assert_int_equal(cfg_parse_addr(text, &s->addr), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
    return s;
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
    if (s->path[0])
        unlink(s->path);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* An address where nothing listens: a port bound and released. */
static struct cfg_addr closed_addr(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(in);
    struct cfg_addr a;
    char text[64];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    close(fd);
    snprintf(text, sizeof(text), "127.0.0.1:%d", ntohs(in.sin_port));
    assert_int_equal(cfg_parse_addr(text, &a), 0);
    return a;
}

/* --- the checker --------------------------------------------------------- */

struct be { /* what the proxy keeps per backend, as far as health goes */
    struct hc_status st;
    _Atomic int admin;
};

static struct cfg_health http_cfg(uint32_t interval_ms, uint32_t timeout_ms, uint32_t rise,
                                  uint32_t fall)
{
    struct cfg_health h = {
        .type = CFG_HC_HTTP,
        .path = "/healthz",
        .interval_ms = interval_ms,
        .timeout_ms = timeout_ms,
        .rise = rise,
        .fall = fall,
        .jitter = 0.1,
    };

    assert_int_equal(cfg_parse_status_set("200-399", &h.expect), 0);
    return h;
}

static struct hc_target target(struct be *b, const char *name, struct cfg_addr addr,
                               struct cfg_health h)
{
    struct hc_target t = {
        .pool = "api", .name = name, .addr = addr, .cfg = h, .state = &b->st, .admin = &b->admin};

    return t;
}

static void be_init(struct be *b, enum hc_state initial)
{
    hc_status_init(&b->st, initial);
    atomic_init(&b->admin, CFG_ADMIN_ACTIVE);
}

static struct hc *hc_started(void)
{
    char err[128];
    struct hc *hc = hc_new(err, sizeof(err));

    assert_non_null(hc);
    assert_int_equal(hc_start(hc), 0);
    return hc;
}

/* Poll until B's health is WANT; returns the milliseconds it took, or fails after LIMIT_MS. */
static int64_t wait_health(struct be *b, int want, int64_t limit_ms)
{
    int64_t t0 = clock_mono_ms();

    while (atomic_load(&b->st.health) != want) { /* bounded by limit_ms */
        if (clock_mono_ms() - t0 > limit_ms) {
            print_error("health is %s after %lld ms, want %s\n",
                        hc_state_name(atomic_load(&b->st.health)), (long long)limit_ms,
                        hc_state_name(want));
            fail();
        }
        usleep(2000);
    }
    return clock_mono_ms() - t0;
}

static void test_http_up_and_request(void **state)
{
    struct srv *s = srv_start(NULL, SRV_STATUS, 200);
    struct be b;
    char err[128];
    struct hc *hc = hc_new(err, sizeof(err));
    struct hc_target t;
    char want[256];
    int64_t ms;

    (void)state;
    assert_non_null(hc);
    be_init(&b, HC_UNKNOWN);
    t = target(&b, "b1", s->addr, http_cfg(10000, 1000, 2, 3));
    assert_int_equal(hc_set_targets(hc, &t, 1), 0); /* before start: adopted at once */
    assert_int_equal(atomic_load(&b.st.health), HC_UNKNOWN);
    assert_int_equal(hc_start(hc), 0);
    ms = wait_health(&b, HC_UP, 1000);
    assert_true(ms < 500); /* the first check runs at once, not after the 10 s interval */
    assert_int_equal(atomic_load(&b.st.last_status), 200);
    assert_int_equal(atomic_load(&b.st.checks_ok), 1);
    assert_int_equal(atomic_load(&b.st.checks_failed), 0);
    assert_int_equal(atomic_load(&b.st.transitions), 1);
    assert_int_equal(atomic_load(&b.st.counter), 4);
    assert_true(atomic_load(&b.st.last_change_ms) > 1600000000000);
    snprintf(want, sizeof(want),
             "GET /healthz HTTP/1.1\r\nHost: %s\r\nUser-Agent: lb-health\r\n"
             "Connection: close\r\n\r\n",
             s->addr.text);
    pthread_mutex_lock(&s->lock);
    assert_string_equal(s->last_req, want);
    pthread_mutex_unlock(&s->lock);
    hc_stop_free(hc);
    srv_stop(s);
}

static void test_connect_refused(void **state)
{
    struct be b;
    struct hc *hc = hc_started();
    struct hc_target t;

    (void)state;
    be_init(&b, HC_UNKNOWN);
    t = target(&b, "b1", closed_addr(), http_cfg(10000, 1000, 2, 3));
    assert_int_equal(hc_set_targets(hc, &t, 1), 0);
    wait_health(&b, HC_DOWN, 1000);
    assert_int_equal(atomic_load(&b.st.last_fail), HCF_CONNECT_REFUSED);
    assert_int_equal(atomic_load(&b.st.last_status), 0);
    assert_int_equal(atomic_load(&b.st.checks_failed), 1);
    hc_stop_free(hc);
}

/* One check against a server in MODE: the failure it records. */
static void one_failure(int mode, int tcp, enum hc_fail want, int want_status)
{
    struct srv *s = srv_start(NULL, mode, 503);
    struct be b;
    struct hc *hc = hc_started();
    struct cfg_health h = http_cfg(10000, 150, 2, 3);
    struct hc_target t;

    if (tcp)
        h.type = CFG_HC_TCP;
    be_init(&b, HC_UNKNOWN);
    t = target(&b, "b1", s->addr, h);
    assert_int_equal(hc_set_targets(hc, &t, 1), 0);
    wait_health(&b, want == HCF_NONE ? HC_UP : HC_DOWN, 1500);
    assert_int_equal(atomic_load(&b.st.last_fail), want);
    assert_int_equal(atomic_load(&b.st.last_status), want_status);
    hc_stop_free(hc);
    srv_stop(s);
}

static void test_failure_layers(void **state)
{
    (void)state;
    one_failure(SRV_STATUS, 0, HCF_BAD_STATUS, 503);
    one_failure(SRV_HANG, 0, HCF_READ_TIMEOUT, 0);
    one_failure(SRV_CLOSE, 0, HCF_CLOSED, 0);
    one_failure(SRV_GARBAGE, 0, HCF_INVALID_RESPONSE, 0);
    one_failure(SRV_BIGHEAD, 0, HCF_NONE, 200); /* judged by its status line */
    one_failure(SRV_INTERIM, 0, HCF_NONE, 204); /* the 100 is skipped */
    one_failure(SRV_HANG, 1, HCF_NONE, 0);      /* tcp: passes on connect */
}

/*
 * A full accept queue drops the SYN of the check: the connect does not
 * complete within the timeout. (Linux keeps backlog+1 connections queued.)
 */
static void test_connect_timeout(void **state)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(in);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int fill[4];
    char text[64];
    struct cfg_addr a;
    struct be b;
    struct hc *hc;
    struct hc_target t;

    (void)state;
    assert_int_equal(bind(lfd, (struct sockaddr *)&in, sizeof(in)), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&in, &len), 0);
    assert_int_equal(listen(lfd, 0), 0);
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&in, sizeof(in));
    }
    usleep(50000);
    snprintf(text, sizeof(text), "127.0.0.1:%d", ntohs(in.sin_port));
    assert_int_equal(cfg_parse_addr(text, &a), 0);
    be_init(&b, HC_UNKNOWN);
    hc = hc_started();
    t = target(&b, "b1", a, http_cfg(10000, 100, 2, 3));
    t.cfg.type = CFG_HC_TCP;
    assert_int_equal(hc_set_targets(hc, &t, 1), 0);
    wait_health(&b, HC_DOWN, 1000);
    assert_int_equal(atomic_load(&b.st.last_fail), HCF_CONNECT_TIMEOUT);
    assert_true(atomic_load(&b.st.last_duration_us) >= 90000);
    hc_stop_free(hc);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

/* Capture what the checker logs (stderr) while a backend goes up, down and up. */
static void test_fall_and_rise_timing_and_logs(void **state)
{
    struct srv *s = srv_start(NULL, SRV_STATUS, 200);
    struct be b;
    struct hc *hc = hc_started();
    struct hc_target t;
    char logpath[] = "/tmp/test_health_log_XXXXXX";
    int logfd = mkstemp(logpath);
    int saved = dup(STDERR_FILENO);
    char text[8192];
    ssize_t n;
    int64_t ms;

    (void)state;
    assert_true(logfd != -1 && saved != -1);
    dup2(logfd, STDERR_FILENO);
    be_init(&b, HC_UNKNOWN);
    t = target(&b, "b1", s->addr, http_cfg(50, 100, 2, 3));
    assert_int_equal(hc_set_targets(hc, &t, 1), 0);
    wait_health(&b, HC_UP, 1000);

    atomic_store(&s->status, 503);
    ms = wait_health(&b, HC_DOWN, 2000);
    assert_true(ms <= 3 * 55 + 100 + 100); /* fall x interval (+ jitter) + timeout + slack */
    assert_true(ms >= 2 * 45);             /* not before the third failure */
    assert_int_equal(atomic_load(&b.st.last_fail), HCF_BAD_STATUS);
    assert_int_equal(atomic_load(&b.st.last_status), 503);

    atomic_store(&s->status, 200);
    ms = wait_health(&b, HC_UP, 2000);
    assert_true(ms <= 2 * 55 + 100 + 100);
    assert_true(ms >= 1 * 45);
    assert_int_equal(atomic_load(&b.st.transitions), 3);
    hc_stop_free(hc);
    srv_stop(s);

    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(logfd, text, sizeof(text) - 1, 0);
    close(logfd);
    unlink(logpath);
    assert_true(n > 0);
    text[n] = 0;
    assert_non_null(strstr(text, "health up for api/b1: first check passed (status 200)\n"));
    assert_non_null(strstr(
        text, "health down for api/b1: 3 consecutive failed checks (last: bad status 503)\n"));
    assert_non_null(strstr(text, "health up for api/b1: 2 consecutive passing checks\n"));
}

static void test_unix_socket(void **state)
{
    char path[64];
    struct srv *s;
    struct be b;
    struct hc *hc = hc_started();
    struct hc_target t;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/test_health_%d.sock", (int)getpid());
    s = srv_start(path, SRV_STATUS, 200);
    be_init(&b, HC_UNKNOWN);
    t = target(&b, "u1", s->addr, http_cfg(10000, 1000, 2, 3));
    assert_int_equal(hc_set_targets(hc, &t, 1), 0);
    wait_health(&b, HC_UP, 1000);
    pthread_mutex_lock(&s->lock);
    assert_non_null(strstr(s->last_req, "\r\nHost: localhost\r\n"));
    pthread_mutex_unlock(&s->lock);
    hc_stop_free(hc);
    srv_stop(s);
}

static void test_host_header_and_expect(void **state)
{
    struct srv *s = srv_start(NULL, SRV_STATUS, 418);
    struct be b;
    struct hc *hc = hc_started();
    struct cfg_health h = http_cfg(10000, 1000, 2, 3);
    struct hc_target t;
    static const char want[] = "GET /ping?deep=1 HTTP/1.1\r\nHost: svc.internal\r\n";

    (void)state;
    h.host = "svc.internal";
    h.path = "/ping?deep=1";
    assert_int_equal(cfg_parse_status_set("418", &h.expect), 0);
    be_init(&b, HC_UNKNOWN);
    t = target(&b, "b1", s->addr, h);
    assert_int_equal(hc_set_targets(hc, &t, 1), 0);
    wait_health(&b, HC_UP, 1000);
    pthread_mutex_lock(&s->lock);
    assert_true(strncmp(s->last_req, want, strlen(want)) == 0);
    pthread_mutex_unlock(&s->lock);
    hc_stop_free(hc);
    srv_stop(s);
}

static void test_off_maint_and_reload(void **state)
{
    struct srv *s = srv_start(NULL, SRV_STATUS, 200);
    struct be b1, b2, b3;
    struct hc *hc = hc_started();
    struct hc_target t[3];
    struct cfg_health off = http_cfg(50, 100, 2, 3);
    uint64_t ok;

    (void)state;
    off.type = CFG_HC_OFF;
    be_init(&b1, HC_UNKNOWN);
    be_init(&b2, HC_UNKNOWN);
    be_init(&b3, HC_DOWN); /* type off: the checker sets it up */
    t[0] = target(&b1, "b1", s->addr, http_cfg(50, 100, 2, 3));
    t[1] = target(&b2, "b2", s->addr, http_cfg(50, 100, 2, 3));
    t[2] = target(&b3, "b3", closed_addr(), off);
    assert_int_equal(hc_set_targets(hc, t, 3), 0);
    assert_int_equal(atomic_load(&b3.st.health), HC_UP); /* adopted when the call returned */
    wait_health(&b1, HC_UP, 1000);
    wait_health(&b2, HC_UP, 1000);

    /* maint: not checked, health unknown; back to active: checked at once */
    atomic_store(&b1.admin, CFG_ADMIN_MAINT);
    wait_health(&b1, HC_UNKNOWN, 1000);
    ok = atomic_load(&b1.st.checks_ok);
    usleep(200000);
    assert_int_equal(atomic_load(&b1.st.checks_ok), ok);
    atomic_store(&b1.admin, CFG_ADMIN_ACTIVE);
    assert_true(wait_health(&b1, HC_UP, 1000) < HC_MAINT_POLL_MS + 100);
    atomic_store(&b1.admin, CFG_ADMIN_DRAIN); /* drain: still checked */
    ok = atomic_load(&b1.st.checks_ok);
    usleep(200000);
    assert_true(atomic_load(&b1.st.checks_ok) > ok);

    /* reload: b2 removed, b1 kept (its counters too), b3 turns to http */
    t[1] = t[2];
    t[1].cfg = http_cfg(50, 100, 2, 3);
    assert_int_equal(hc_set_targets(hc, t, 2), 0);
    ok = atomic_load(&b2.st.checks_ok);
    usleep(200000);
    assert_int_equal(atomic_load(&b2.st.checks_ok), ok); /* no longer touched */
    assert_int_equal(atomic_load(&b1.st.health), HC_UP);
    assert_true(atomic_load(&b1.st.checks_ok) > 5);
    wait_health(&b3, HC_DOWN, 1000); /* up (off), then 3 refused connects */
    assert_int_equal(atomic_load(&b3.st.last_fail), HCF_CONNECT_REFUSED);
    assert_true(atomic_load(&b3.st.checks_failed) >= 3);
    assert_int_equal(atomic_load(&b3.st.transitions), 2); /* down -> up (off) -> down */

    /* errors: a NULL state, the same state twice */
    t[1].state = NULL;
    assert_int_equal(hc_set_targets(hc, t, 2), -EINVAL);
    t[1] = t[0];
    assert_int_equal(hc_set_targets(hc, t, 2), -EINVAL);

    /* an empty set stops all checks */
    assert_int_equal(hc_set_targets(hc, NULL, 0), 0);
    ok = atomic_load(&b1.st.checks_ok);
    usleep(150000);
    assert_int_equal(atomic_load(&b1.st.checks_ok), ok);
    hc_stop_free(hc);
    srv_stop(s);
}

static void test_many_targets_reloaded(void **state)
{
    enum { N = 64 };
    struct srv *s = srv_start(NULL, SRV_STATUS, 200);
    struct be *b = calloc(N, sizeof(*b));
    struct hc_target t[N];
    struct hc *hc = hc_started();
    char names[N][16];

    (void)state;
    assert_non_null(b);
    log_set_level(LOGL_WARN); /* 64 "health up" lines say nothing here */
    for (int i = 0; i < N; i++) {
        be_init(&b[i], HC_UNKNOWN);
        snprintf(names[i], sizeof(names[i]), "b%d", i);
        t[i] = target(&b[i], names[i], s->addr, http_cfg(100, 1000, 1, 1));
    }
    for (int round = 0; round < 20; round++) { /* different subsets, in flight or not */
        int n = 0;
        struct hc_target sub[N];
        for (int i = 0; i < N; i++)
            if ((i + round) % 3 != 0)
                sub[n++] = t[(i * 7 + round) % N];
        assert_int_equal(hc_set_targets(hc, sub, n), 0);
        usleep(5000);
    }
    assert_int_equal(hc_set_targets(hc, t, N), 0);
    for (int i = 0; i < N; i++)
        wait_health(&b[i], HC_UP, 2000);
    log_set_level(LOGL_INFO);
    hc_stop_free(hc);
    srv_stop(s);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_result_decides),
        cmocka_unit_test(test_rise_fall_tables),
        cmocka_unit_test(test_counter_values),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_out_of_range_counter),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_http_up_and_request),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_failure_layers),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_fall_and_rise_timing_and_logs),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_host_header_and_expect),
        cmocka_unit_test(test_off_maint_and_reload),
        cmocka_unit_test(test_many_targets_reloaded),
    };

    log_set_level(LOGL_INFO);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
