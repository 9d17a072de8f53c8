/*
 * notify.h - telling systemd how the service is doing (sd_notify protocol).
 *
 * Under Type=notify systemd passes the address of a datagram socket in
 * $NOTIFY_SOCKET and waits for "READY=1" before it calls the service started;
 * it shows "STATUS=" in `systemctl status`, treats "RELOADING=1" ... "READY=1"
 * as a reload in progress and "STOPPING=1" as a stop, and, with WatchdogSec=,
 * kills the service when "WATCHDOG=1" stops arriving. The protocol is one
 * datagram of newline-separated assignments, so we speak it ourselves instead
 * of linking libsystemd.
 *
 * Contract: notify_init() runs once on the main thread before any thread is
 * started (it changes the environment); every other call is made from the
 * main thread only. Nothing here blocks, and after notify_init() nothing
 * fails: a message that cannot be sent is dropped (systemd then acts on its
 * time-outs), and the first such drop is logged at debug level. Outside
 * systemd every call is a no-op.
 */
#ifndef LB_NOTIFY_H
#define LB_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

struct notify {
    int fd;                  /* -1: not under systemd, every send is a no-op */
    struct sockaddr_un addr; /* $NOTIFY_SOCKET; sun_path[0] == 0 for an abstract name */
    socklen_t addrlen;
    uint64_t watchdog_usec; /* WatchdogSec= in microseconds, 0: no watchdog for us */
    bool send_error_logged; /* one debug line for the first failed send, not one per send */
};

/*
 * Reads $NOTIFY_SOCKET ("/path" or "@abstract") and $WATCHDOG_USEC /
 * $WATCHDOG_PID, and unsets all three so that no child process inherits them.
 * Returns 0, also when NOTIFY_SOCKET is unset or empty (then every send is a no-op);
 * -1 with errno set when NOTIFY_SOCKET is set but unusable (EINVAL: not an
 * absolute path or "@name", or too long; or socket()'s errno). On -1 the
 * struct is still valid and every send is a no-op: the caller decides whether
 * to run on (systemd will then time the start out) or to exit at once.
 */
int notify_init(struct notify *n);

/* "READY=1" and "STATUS=STATUS" (no STATUS line when STATUS is NULL). Sent
 * once listening, and again at the end of every reload, successful or not. */
void notify_ready(struct notify *n, const char *status);

/* "RELOADING=1" and "MONOTONIC_USEC=" the CLOCK_MONOTONIC time in
 * microseconds, at the start of a reload; notify_ready() must follow. */
void notify_reloading(struct notify *n);

/* "STATUS=" and the formatted one-line summary. */
void notify_status(struct notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "STOPPING=1" and "STATUS=STATUS" (none when NULL), when draining begins. */
void notify_stopping(struct notify *n, const char *status);

/* "WATCHDOG=1": the main loop is alive. */
void notify_watchdog(struct notify *n);

/* Seconds between two notify_watchdog() calls: half of WATCHDOG_USEC, as
 * sd_watchdog_enabled(3) advises; 0 when no watchdog is asked of this process
 * (WATCHDOG_USEC unset or invalid, or WATCHDOG_PID names another process). */
double notify_watchdog_interval(const struct notify *n);

/* Closes the socket; every send after it is a no-op. */
void notify_deinit(struct notify *n);

#endif
