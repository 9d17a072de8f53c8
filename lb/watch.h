/*
 * watch.h - noticing that the configuration changed (lb.watch_config).
 *
 * The watcher follows files by the directories that hold them (inotify),
 * because the ways files are replaced in practice do not modify them in
 * place: an editor writes a new file and renames it over the old one, and
 * Kubernetes updates a mounted ConfigMap by pointing a symlink in the
 * mount's directory at a new directory. Any event in a watched directory
 * starts a short settle timer; when it runs out the files are read and
 * fingerprinted, and only a fingerprint different from the last one calls
 * back. So a burst of events from one change is one call, and an event that
 * changed nothing of ours (another file in /etc) is none.
 *
 * Main thread only. The callback runs from the loop; it may call
 * watch_set() on the same watcher.
 */
#ifndef LB_WATCH_H
#define LB_WATCH_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#define WATCH_FILES  2   /* the configuration file and admin.token_file */
#define WATCH_DIRS   4   /* each file's directory, and its target's when a symlink */
#define WATCH_SETTLE 0.2 /* seconds of quiet after an event before looking */

struct watch;
typedef void (*watch_cb)(struct watch *w, void *arg);

struct watch {
    int fd; /* inotify descriptor; -1 when not watching */
    ev_io io;
    ev_timer settle;
    struct ev_loop *loop;
    char *files[WATCH_FILES];
    int nfiles;
    uint64_t seen; /* fingerprint of the files' contents at the last look */
    watch_cb cb;
    void *arg;
};

void watch_init(struct watch *w, struct ev_loop *loop, watch_cb cb, void *arg);

/*
 * Watch FILES (NULL entries are skipped), or nothing when N is 0. Replaces
 * what was watched; the fingerprint is taken now, so only later changes call
 * back. Returns 0, or -1 with a reason in ERR (then nothing is watched).
 */
int watch_set(struct watch *w, const char *const *files, int n, char *err, size_t errlen);

void watch_stop(struct watch *w);

#endif
