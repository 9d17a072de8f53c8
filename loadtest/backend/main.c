/*
 * main.c - lb-backend's command line.
 *
 *   lb-backend --listen ADDR [--listen ADDR ...] --name NAME [--zone ZONE]
 *              [--control ADDR] [--threads N] [--seed N] [--idle-timeout DUR]
 *              [-v] [fault flags]
 *
 * Exit status: 0 after SIGTERM or SIGINT, 1 when it cannot start (address
 * in use), 2 on a bad command line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadtest/backend/backend.h"

static const char bk_cli_usage[] =
    "usage: lb-backend --listen ADDR [--listen ADDR ...] --name NAME [options]\n"
    "\n"
    "  --listen ADDR        HOST:PORT, [V6]:PORT or unix:/path (up to 16; port 0 picks one)\n"
    "  --name NAME          sent as X-Backend and as the default body\n"
    "  --zone ZONE          sent as X-Zone (default none)\n"
    "  --control ADDR       extra listener for /__control, /__stats, /healthz only;\n"
    "                       never closed by the refuse fault\n"
    "  --threads N          worker threads sharing the TCP ports (SO_REUSEPORT), default 1\n"
    "  --seed N             seed of the fault draws (default: derived from NAME)\n"
    "  --idle-timeout DUR   close connections idle this long (default 60s)\n"
    "  -v, --verbose        log connection errors and injected resets\n"
    "\n"
    "faults (also settable at run time: /__control?key=value, keys with '_'):\n"
    "  --latency DUR|lognormal:P50:P99   delay before each answer (50ms, 1s, 250us)\n"
    "  --error-rate R       fraction 0..1 of requests answered with --error-status\n"
    "  --error-status N     default 500\n"
    "  --reset-rate R       fraction 0..1 of requests answered with a TCP reset\n"
    "  --hang [0|1]         read requests, never answer\n"
    "  --refuse [0|1]       close the listeners (connections refused)\n"
    "  --slow-body BPS      throttle response bodies to BPS bytes per second\n"
    "  --health N           status of /healthz (default 200)\n"
    "  --health-delay DUR   delay of /healthz\n"
    "  --close-after N      close each connection after N requests\n"
    "  --expect continue|ignore   answer Expect: 100-continue, or just wait for the body\n";

static int bk_cli_fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "lb-backend: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", bk_cli_usage);
    return -1;
}

static bool bk_cli_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > BK_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("._:-", *s) != NULL))
            return false;
    return true;
}

static int bk_cli_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return *end != '\0' || errno != 0 || *out > max ? -1 : 0;
}

/* A fault flag: "--error-rate" is the key "error_rate". */
static int bk_cli_fault(struct bk_config *cfg, const char *flag, const char *value)
{
    char key[32], err[256];
    size_t n = strlen(flag);

    if (n >= sizeof(key))
        return bk_cli_fail("unknown flag --%s", flag);
    for (size_t i = 0; i <= n; i++)
        key[i] = flag[i] == '-' ? '_' : flag[i];
    if (bk_fault_set(&cfg->faults, key, value, err, sizeof(err)) == -1)
        return bk_cli_fail("%s", strncmp(err, "unknown", 7) == 0 ? "unknown flag" : err);
    return 0;
}

static int bk_cli_option(struct bk_config *cfg, const char *flag, const char *value)
{
    char err[256];
    unsigned long long v;
    double ms;

    if (strcmp(flag, "listen") == 0) {
        if (cfg->nlisten == BK_MAX_LISTEN)
            return bk_cli_fail("too many --listen (at most %s)", "16");
        if (bk_lsn_parse(value, &cfg->listen[cfg->nlisten++], err, sizeof(err)) == -1)
            return bk_cli_fail("%s", err);
    } else if (strcmp(flag, "control") == 0) {
        if (bk_lsn_parse(value, &cfg->control, err, sizeof(err)) == -1)
            return bk_cli_fail("%s", err);
        cfg->has_control = true;
    } else if (strcmp(flag, "name") == 0 || strcmp(flag, "zone") == 0) {
        if (!bk_cli_name_ok(value))
            return bk_cli_fail("bad name or zone \"%s\": 1 to 64 of A-Z a-z 0-9 . _ : -", value);
        if (flag[0] == 'n')
            cfg->name = value;
        else
            cfg->zone = value;
    } else if (strcmp(flag, "threads") == 0) {
        if (bk_cli_uint(value, BK_MAX_THREADS, &v) == -1 || v == 0)
            return bk_cli_fail("bad --threads \"%s\": 1 to 64", value);
        cfg->threads = (int)v;
    } else if (strcmp(flag, "seed") == 0) {
        if (bk_cli_uint(value, UINT64_MAX, &v) == -1)
            return bk_cli_fail("bad --seed \"%s\"", value);
        cfg->seed = v;
        cfg->seeded = true;
    } else if (strcmp(flag, "idle-timeout") == 0) {
        if (bk_fault_duration(value, &ms) == -1 || ms <= 0)
            return bk_cli_fail("bad --idle-timeout \"%s\"", value);
        cfg->idle_timeout = ms / 1000.0;
    } else {
        return bk_cli_fault(cfg, flag, value);
    }
    return 0;
}

static bool bk_cli_is_bool(const char *s)
{
    static const char *const words[] = {"0", "1", "true", "false", "on", "off"};

    for (size_t i = 0; s && i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(s, words[i]) == 0)
            return true;
    return false;
}

/* The value of the flag at argv[*i]: after '=', or the next argument. */
static const char *bk_cli_value(int argc, char **argv, int *i, const char *flag, const char *eq)
{
    char key[32];
    size_t n = strlen(flag);

    if (eq)
        return eq + 1;
    if (n < sizeof(key)) {
        for (size_t k = 0; k <= n; k++)
            key[k] = flag[k] == '-' ? '_' : flag[k];
        if (bk_fault_is_bool(key) && (*i + 1 >= argc || !bk_cli_is_bool(argv[*i + 1])))
            return "1";
    }
    return *i + 1 < argc ? argv[++*i] : NULL;
}

static int bk_cli_parse(int argc, char **argv, struct bk_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        char flag[64];
        const char *arg = argv[i], *eq, *value;
        size_t n;

        if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            cfg->verbose = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return bk_cli_fail("unexpected argument \"%s\"", arg);
        eq = strchr(arg, '=');
        n = eq ? (size_t)(eq - arg) - 2 : strlen(arg) - 2;
        if (n >= sizeof(flag))
            return bk_cli_fail("unknown flag %s", arg);
        memcpy(flag, arg + 2, n);
        flag[n] = '\0';
        value = bk_cli_value(argc, argv, &i, flag, eq);
        if (value == NULL)
            return bk_cli_fail("--%s needs a value", flag);
        if (bk_cli_option(cfg, flag, value) == -1)
            return -1;
    }
    if (cfg->nlisten == 0 || cfg->name == NULL)
        return bk_cli_fail("%s", "--listen and --name are required");
    return 0;
}

static void bk_cli_defaults(struct bk_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->zone = "none";
    cfg->threads = 1;
    cfg->idle_timeout = 60;
    bk_fault_defaults(&cfg->faults);
}

int main(int argc, char **argv)
{
    struct bk_server srv;
    struct bk_config *cfg = &srv.cfg;
    char err[256];
    int rc;

    memset(&srv, 0, sizeof(srv));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(bk_cli_usage, stdout);
            return 0;
        }
    }
    bk_cli_defaults(cfg);
    if (bk_cli_parse(argc, argv, cfg) == -1)
        return 2;
    if (!cfg->seeded)
        cfg->seed = bk_rng_hash(cfg->name);
    cfg->body_len = (size_t)snprintf(cfg->body, sizeof(cfg->body), "%s\n", cfg->name);
    signal(SIGPIPE, SIG_IGN);
    if (bk_srv_init(&srv, err, sizeof(err)) == -1) {
        fprintf(stderr, "lb-backend %s: %s\n", cfg->name, err);
        bk_srv_deinit(&srv);
        return 1;
    }
    rc = bk_srv_run(&srv);
    bk_srv_deinit(&srv);
    return rc == 0 ? 0 : 1;
}
