/*
 * test_notify.c - the sd_notify client: every message arrives, in order and
 * with its exact bytes, on a path socket and on an abstract one; the
 * environment is consumed; without NOTIFY_SOCKET everything is a no-op; the
 * watchdog interval follows WATCHDOG_USEC and WATCHDOG_PID; a status stays one
 * line, bounded and valid UTF-8; a vanished receiver costs nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lb/notify.h"

struct receiver {
    int fd;
    char dir[64];  /* temp dir of a path socket, "" for an abstract one */
    char path[96]; /* what NOTIFY_SOCKET is set to; fits sun_path */
};

static void receiver_bind(struct receiver *r, const struct sockaddr_un *sa, socklen_t len)
{
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd != -1);
    assert_int_equal(bind(r->fd, (const struct sockaddr *)sa, len), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", r->path, 1), 0);
}

static void receiver_path(struct receiver *r)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    snprintf(r->dir, sizeof(r->dir), "/tmp/lb-notify-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->path, sizeof(r->path), "%s/notify", r->dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->path);
    receiver_bind(r, &sa, sizeof(sa));
}

static void receiver_abstract(struct receiver *r)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->dir[0] = '\0';
    snprintf(r->path, sizeof(r->path), "@lb-test-notify/%d/%ld", (int)getpid(), (long)ts.tv_nsec);
    size_t len = strlen(r->path);
    memcpy(sa.sun_path, r->path, len);
    sa.sun_path[0] = '\0';
    receiver_bind(r, &sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
}

static void receiver_close(struct receiver *r)
{
    close(r->fd);
    if (r->dir[0]) {
        unlink(r->path);
        rmdir(r->dir);
    }
}

/* The next datagram, NUL-terminated; fails the test after 2 s without one. */
static size_t receiver_next(struct receiver *r, char *out, size_t cap)
{
    struct pollfd p = {.fd = r->fd, .events = POLLIN};

    assert_int_equal(poll(&p, 1, 2000), 1);
    ssize_t n = recv(r->fd, out, cap - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    out[n] = '\0';
    return (size_t)n;
}

static bool receiver_is_empty(struct receiver *r)
{
    struct pollfd p = {.fd = r->fd, .events = POLLIN};

    return poll(&p, 1, 50) == 0;
}

static uint64_t now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void clear_env(void)
{
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

/* The service's life as main() tells it: started, reloaded, stopping. */
static void check_lifecycle(struct receiver *r)
{
    struct notify n;
    char buf[2048];

    assert_int_equal(notify_init(&n), 0);
    assert_true(n.fd != -1);
    assert_null(getenv("NOTIFY_SOCKET")); /* children must not inherit it */

    notify_ready(&n, "serving: 2 listeners, 4 workers");
    uint64_t before = now_usec();
    notify_reloading(&n);
    uint64_t after = now_usec();
    notify_ready(&n, "reloaded");
    notify_status(&n, "%d connections, %s", 12, "draining");
    notify_stopping(&n, "draining 12 connections");
    notify_watchdog(&n);
    notify_ready(&n, NULL);
    notify_stopping(&n, NULL);

    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1\nSTATUS=serving: 2 listeners, 4 workers");
    receiver_next(r, buf, sizeof(buf));
    uint64_t usec = 0;
    int used = 0;
    assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "%n", &usec, &used), 1);
    assert_int_equal((size_t)used, strlen(buf)); /* nothing after the number */
    assert_true(usec >= before && usec <= after);
    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1\nSTATUS=reloaded");
    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "STATUS=12 connections, draining");
    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "STOPPING=1\nSTATUS=draining 12 connections");
    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "WATCHDOG=1");
    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "READY=1");
    receiver_next(r, buf, sizeof(buf));
    assert_string_equal(buf, "STOPPING=1");
    assert_true(receiver_is_empty(r));

    notify_deinit(&n);
    assert_int_equal(n.fd, -1);
    notify_ready(&n, "after deinit"); /* a no-op */
    assert_true(receiver_is_empty(r));
}

static void test_path_socket(void **state)
{
    struct receiver r;

    (void)state;
    clear_env();
    receiver_path(&r);
    check_lifecycle(&r);
    receiver_close(&r);
}

static void test_abstract_socket(void **state)
{
    struct receiver r;

    (void)state;
    clear_env();
    receiver_abstract(&r);
    check_lifecycle(&r);
    receiver_close(&r);
}

static void test_not_under_systemd(void **state)
{
    struct notify n;

    (void)state;
    clear_env();
    assert_int_equal(notify_init(&n), 0);
    assert_int_equal(n.fd, -1);
    notify_ready(&n, "x");
    notify_reloading(&n);
    notify_status(&n, "%s", "y");
    notify_stopping(&n, "z");
    notify_watchdog(&n);
    assert_true(notify_watchdog_interval(&n) == 0.0);
    assert_false(n.send_error_logged); /* nothing was even tried */
    notify_deinit(&n);
    notify_deinit(&n); /* twice is harmless */

    setenv("NOTIFY_SOCKET", "", 1); /* set but empty: the same as unset */
    assert_int_equal(notify_init(&n), 0);
    assert_int_equal(n.fd, -1);
    assert_null(getenv("NOTIFY_SOCKET"));
}

static void test_bad_notify_socket(void **state)
{
    static const char *const bad[] = {"relative/path", "@", "vsock:2:1234", NULL};
    char longpath[200];
    struct notify n;

    (void)state;
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    for (int i = 0; bad[i]; i++) {
        clear_env();
        setenv("NOTIFY_SOCKET", bad[i], 1);
        setenv("WATCHDOG_USEC", "1000000", 1);
        errno = 0;
        assert_int_equal(notify_init(&n), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(n.fd, -1);
        assert_null(getenv("NOTIFY_SOCKET"));
        assert_true(notify_watchdog_interval(&n) == 0.0); /* no socket to ping */
        notify_ready(&n, "x");                            /* a no-op */
        notify_deinit(&n);
    }
    clear_env();
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(notify_init(&n), -1);
    assert_int_equal(errno, EINVAL);
    clear_env();
}

/* Interval in seconds after notify_init() with the given environment. */
static double watchdog_with(struct receiver *r, const char *usec, const char *pid)
{
    struct notify n;

    clear_env();
    setenv("NOTIFY_SOCKET", r->path, 1);
    if (usec)
        setenv("WATCHDOG_USEC", usec, 1);
    if (pid)
        setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(notify_init(&n), 0);
    assert_null(getenv("WATCHDOG_USEC"));
    assert_null(getenv("WATCHDOG_PID"));
    double s = notify_watchdog_interval(&n);
    notify_deinit(&n);
    return s;
}

static void test_watchdog_interval(void **state)
{
    struct receiver r;
    char self[32], other[32];

    (void)state;
    clear_env();
    receiver_path(&r);
    snprintf(self, sizeof(self), "%d", (int)getpid());
    snprintf(other, sizeof(other), "%d", (int)getpid() + 1);

    assert_true(watchdog_with(&r, "10000000", self) == 5.0);
    assert_true(watchdog_with(&r, "10000000", NULL) == 5.0); /* no PID: it is ours */
    assert_true(watchdog_with(&r, "3000", self) == 0.0015);
    assert_true(watchdog_with(&r, "10000000", other) == 0.0);
    assert_true(watchdog_with(&r, "10000000", "1") == 0.0);
    assert_true(watchdog_with(&r, "10000000", "x") == 0.0);
    assert_true(watchdog_with(&r, NULL, self) == 0.0);
    assert_true(watchdog_with(&r, "0", self) == 0.0);
    assert_true(watchdog_with(&r, "ten", self) == 0.0);
    assert_true(watchdog_with(&r, "-5", self) == 0.0);
    assert_true(watchdog_with(&r, "10s", self) == 0.0);
    assert_true(watchdog_with(&r, "", self) == 0.0);
    receiver_close(&r);
    clear_env();
}

/* A status is one line (a newline must not forge "READY=1"), bounded, and
 * cut between UTF-8 characters, never inside one. */
static void test_status_is_one_safe_line(void **state)
{
    struct receiver r;
    struct notify n;
    char buf[4096], big[2001];

    (void)state;
    clear_env();
    receiver_path(&r);
    assert_int_equal(notify_init(&n), 0);

    notify_status(&n, "bad\nREADY=1\r\tend");
    receiver_next(&r, buf, sizeof(buf));
    assert_string_equal(buf, "STATUS=bad READY=1  end");

    notify_stopping(&n, "a\nSTOPPING=1");
    receiver_next(&r, buf, sizeof(buf));
    assert_string_equal(buf, "STOPPING=1\nSTATUS=a STOPPING=1");

    /* 1000 two-byte characters: cut at 512 bytes, 256 whole characters */
    for (size_t i = 0; i + 1 < sizeof(big); i += 2) {
        big[i] = (char)0xc3;
        big[i + 1] = (char)0xa9; /* é */
    }
    big[sizeof(big) - 1] = '\0';
    notify_ready(&n, big);
    size_t len = receiver_next(&r, buf, sizeof(buf));
    assert_int_equal(len, strlen("READY=1\nSTATUS=") + 512);
    assert_memory_equal(buf + strlen("READY=1\nSTATUS="), big, 512);

    /* a three-byte character across the limit is left out whole */
    memset(big, 'a', sizeof(big));
    memcpy(big + 511, "\xe2\x82\xac", 3); /* € at bytes 511..513 */
    big[600] = '\0';
    notify_status(&n, "%s", big);
    len = receiver_next(&r, buf, sizeof(buf));
    assert_int_equal(len, strlen("STATUS=") + 511);
    assert_int_equal(buf[len - 1], 'a');

    notify_deinit(&n);
    receiver_close(&r);
}

/* The receiver goes away (systemd restarted, socket removed): sends fail
 * quietly, once noted, and never block or crash. */
static void test_receiver_gone(void **state)
{
    struct receiver r;
    struct notify n;

    (void)state;
    clear_env();
    receiver_path(&r);
    assert_int_equal(notify_init(&n), 0);
    receiver_close(&r);
    assert_false(n.send_error_logged);
    for (int i = 0; i < 3; i++) {
        notify_ready(&n, "nobody listens");
        notify_reloading(&n);
        notify_watchdog(&n);
    }
    assert_true(n.send_error_logged);
    notify_deinit(&n);
}

/* A receiver that never reads: once its queue is full, sends return at once. */
static void test_full_receiver_does_not_block(void **state)
{
    struct receiver r;
    struct notify n;
    char buf[2048];

    (void)state;
    clear_env();
    receiver_path(&r);
    assert_int_equal(notify_init(&n), 0);
    uint64_t t0 = now_usec();
    for (int i = 0; i < 5000; i++)
        notify_watchdog(&n);
    assert_true(now_usec() - t0 < 2000000u);
    assert_true(n.send_error_logged); /* EAGAIN at some point */
    receiver_next(&r, buf, sizeof(buf));
    assert_string_equal(buf, "WATCHDOG=1");
    notify_deinit(&n);
    receiver_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_not_under_systemd),
        cmocka_unit_test(test_bad_notify_socket),
        cmocka_unit_test(test_watchdog_interval),
        cmocka_unit_test(test_status_is_one_safe_line),
        cmocka_unit_test(test_receiver_gone),
        cmocka_unit_test(test_full_receiver_does_not_block),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
