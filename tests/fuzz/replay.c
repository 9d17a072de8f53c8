/*
 * replay.c - run a libFuzzer driver over saved inputs, without libFuzzer.
 *
 * Usage: replay_X PATH...  Each PATH is a file, or a directory whose regular
 * files are all read (not recursively). Every input is passed once to
 * LLVMFuzzerTestOneInput(). Prints "replayed N inputs" and exits 0; a crash
 * or sanitizer report fails the run, and so does an unreadable path (exit 1).
 * Linked with each tests/fuzz/fuzz_*.c by `make unit` so `make test` replays
 * the seed corpora.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Read the whole file into a buffer of exactly its size (so a sanitizer sees
 * a read past the input). Returns 0, or -1 with a message on stderr.
 */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t cap = 0, len = 0;
    int rc = -1;

    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t n;

        if (len == cap) {
            uint8_t *p = realloc(data, cap ? 2 * cap : 4096);

            if (!p) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                goto out;
            }
            data = p;
            cap = cap ? 2 * cap : 4096;
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: read error\n", path);
        goto out;
    }
    {
        uint8_t *exact = malloc(len ? len : 1);

        if (!exact) {
            fprintf(stderr, "replay: %s: out of memory\n", path);
            goto out;
        }
        if (len)
            memcpy(exact, data, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    rc = 0;
out:
    free(data);
    fclose(f);
    return rc;
}

/* Replay every regular file in dir. Returns the count, or -1. */
static long replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    long count = 0;

    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;

        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        if (stat(path, &st) == -1 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path) == -1) {
            count = -1;
            break;
        }
        count++;
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    long total = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n;

        if (stat(argv[i], &st) == -1) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : (replay_file(argv[i]) == 0 ? 1 : -1);
        if (n < 0)
            return 1;
        total += n;
    }
    printf("replayed %ld inputs\n", total);
    return 0;
}
