/*
 * watch.c - inotify on the configuration's directories, a settle timer, and
 * a fingerprint of the files' contents.
 */
#include "lb/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "lb/core/container.h"
#include "lb/core/log.h"

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF)

/* FNV-1a over every file's bytes; a file that cannot be read counts as its errno. */
static uint64_t fingerprint(const struct watch *w)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char buf[8192];

    for (int i = 0; i < w->nfiles; i++) {
        FILE *f = fopen(w->files[i], "r");
        size_t n;

        if (!f) {
            h = (h ^ (uint64_t)(unsigned)errno) * 0x100000001b3ULL;
            continue;
        }
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            for (size_t j = 0; j < n; j++)
                h = (h ^ (unsigned char)buf[j]) * 0x100000001b3ULL;
        fclose(f);
        h = (h ^ 0xff) * 0x100000001b3ULL; /* file boundary */
    }
    return h;
}

static void on_settle(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = container_of(t, struct watch, settle);
    uint64_t now = fingerprint(w);

    if (now == w->seen)
        return;
    w->seen = now;
    w->cb(w, w->arg);
}

static void on_events(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct watch *w = container_of(io, struct watch, io);
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;

    for (int i = 0; i < 64; i++) { /* bounded: the rest waits for the next turn */
        ssize_t n = read(w->fd, buf, sizeof(buf));

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        any = true;
    }
    if (any) { /* one look once the burst is over */
        ev_timer_stop(loop, &w->settle);
        ev_timer_set(&w->settle, WATCH_SETTLE, 0.);
        ev_timer_start(loop, &w->settle);
    }
}

void watch_init(struct watch *w, struct ev_loop *loop, watch_cb cb, void *arg)
{
    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->loop = loop;
    w->cb = cb;
    w->arg = arg;
    ev_init(&w->settle, on_settle);
}

void watch_stop(struct watch *w)
{
    ev_timer_stop(w->loop, &w->settle);
    if (w->fd != -1) {
        ev_io_stop(w->loop, &w->io);
        close(w->fd);
        w->fd = -1;
    }
    for (int i = 0; i < w->nfiles; i++) {
        free(w->files[i]);
        w->files[i] = NULL;
    }
    w->nfiles = 0;
}

/* The directory part of PATH into OUT ("." for a bare name). */
static void dir_of(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(out, len, ".");
    else if (slash == path)
        snprintf(out, len, "/");
    else
        snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* Add a watch on DIR unless one of DIRS[0..*n) is the same; -1 with ERR on failure. */
static int add_dir(struct watch *w, const char *dir, char dirs[][PATH_MAX], int *n, char *err,
                   size_t errlen)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(dirs[i], dir) == 0)
            return 0;
    if (*n == WATCH_DIRS)
        return 0;
    if (inotify_add_watch(w->fd, dir, WATCH_MASK) == -1) {
        snprintf(err, errlen, "watching %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(dirs[(*n)++], PATH_MAX, "%s", dir);
    return 0;
}

int watch_set(struct watch *w, const char *const *files, int n, char *err, size_t errlen)
{
    char dirs[WATCH_DIRS][PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
    int ndirs = 0;

    watch_stop(w);
    if (n == 0)
        return 0;
    if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
        snprintf(err, errlen, "inotify: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n && w->nfiles < WATCH_FILES; i++) {
        if (!files[i])
            continue;
        if (!(w->files[w->nfiles] = strdup(files[i]))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        w->nfiles++;
        dir_of(files[i], dir, sizeof(dir));
        if (add_dir(w, dir, dirs, &ndirs, err, errlen) == -1)
            goto fail;
        /* a symlink (a ConfigMap's file is one): its target's directory too */
        if (realpath(files[i], real)) {
            dir_of(real, dir, sizeof(dir));
            if (add_dir(w, dir, dirs, &ndirs, err, errlen) == -1)
                goto fail;
        }
    }
    w->seen = fingerprint(w);
    ev_io_init(&w->io, on_events, w->fd, EV_READ);
    ev_io_start(w->loop, &w->io);
    return 0;
fail:
    watch_stop(w);
    return -1;
}
