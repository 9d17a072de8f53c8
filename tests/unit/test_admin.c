/*
 * test_admin.c - the admin's DNS rebinding guard: which Host values name this
 * machine, and which listen addresses need the check.
 *
 * Each Host value is placed so that its last byte sits just before a
 * PROT_NONE page (the value comes from a request head, without a NUL): any
 * read past it crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "lb/admin.h"
#include "config/cfg.h"

static char *g_map; /* one readable page, then a PROT_NONE one */
static size_t g_page;

static int guard_setup(void **state)
{
    (void)state;
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    g_map = mmap(NULL, 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_map == MAP_FAILED)
        return -1;
    return mprotect(g_map + g_page, g_page, PROT_NONE);
}

static int guard_teardown(void **state)
{
    (void)state;
    munmap(g_map, 2 * g_page);
    g_map = NULL;
    return 0;
}

static bool host_ok(const char *host)
{
    size_t n = strlen(host);
    char *p = g_map + g_page - n;

    memcpy(p, host, n);
    return admin_host_is_loopback(p, n);
}

static const char *const allowed[] = {
    "localhost",       "LocalHost",  "localhost:9900",       "api.localhost",
    "a.b.localhost:1", "127.0.0.1",  "127.0.0.1:9900",       "127.255.255.254:65535",
    "[::1]",           "[::1]:9900", "[0:0:0:0:0:0:0:1]:80", "[::ffff:127.0.0.1]:80",
};

static const char *const refused[] = {
    "",
    "evil.example",
    "evil.example:9900",
    "127.0.0.1.evil.example",
    "127.0.0.1.evil.example:9900",
    "localhost.evil.example",
    "evillocalhost",
    "localhost.",
    ".localhost",
    "10.0.0.1",
    "128.0.0.1",
    "0.0.0.0",
    "127.1",
    "0x7f.0.0.1",
    "127.0.0.1:",
    "127.0.0.1:123456",
    "127.0.0.1:80x",
    "localhost:9900:1",
    "::1",
    "[::2]",
    "[::]",
    "[::1",
    "[::1]x",
    "[::1]:",
    "[127.0.0.1]",
    "[::ffff:10.0.0.1]",
};

static void test_hosts_allowed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (!host_ok(allowed[i]))
            fail_msg("Host \"%s\" refused", allowed[i]);
    }
}

static void test_hosts_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (host_ok(refused[i]))
            fail_msg("Host \"%s\" allowed", refused[i]);
    }
}

static void test_which_listeners_check_host(void **state)
{
    static const struct {
        const char *listen;
        bool check;
    } cases[] = {
        {"127.0.0.1:9900", true}, {"127.1.2.3:9900", true},
        {"[::1]:9900", true},     {"localhost:9900", true},
        {"*:9900", false},        {"10.0.0.1:9900", false},
        {"[::]:9900", false},     {"unix:/run/lb-admin.sock", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg_addr a;
        assert_int_equal(cfg_parse_addr(cases[i].listen, &a), 0);
        if (admin_checks_host(&a) != cases[i].check)
            fail_msg("admin.listen %s: Host check %s", cases[i].listen,
                     cases[i].check ? "off" : "on");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_allowed),
        cmocka_unit_test(test_hosts_refused),
        cmocka_unit_test(test_which_listeners_check_host),
    };

    return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
