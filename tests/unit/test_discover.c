/*
 * test_discover.c - the policy of discovery on a fake clock: answers into
 * sets, keep-last-good, keep_stale, damping, intervals, log rate, naming.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "config/cfg.h"
#include "lb/discover.h"

static struct disc_entry v4(const char *ip, uint16_t port, uint32_t weight)
{
    struct disc_entry e;
    memset(&e, 0, sizeof(e));
    e.family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, e.ip), 1);
    e.port = port;
    e.weight = weight;
    return e;
}

static struct disc_entry v6(const char *ip, uint16_t port)
{
    struct disc_entry e;
    memset(&e, 0, sizeof(e));
    e.family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, e.ip), 1);
    e.port = port;
    return e;
}

/* The set in use as "a b c" (addresses without ports). */
static const char *set_text(const struct disc_state *s)
{
    static char buf[512];
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < s->nset; i++) {
        char t[64];
        disc_entry_text(&s->set[i], s->set[i].port, t, sizeof(t));
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? " " : "", t);
    }
    return buf;
}

static const struct disc_rules rules = {.keep_stale_ms = 2000, .max_changes = 3};

static void test_first_answer_sorted_and_merged(void **state)
{
    struct disc_state s = {0};
    struct disc_entry a[] = {v4("10.0.0.3", 0, 0), v4("10.0.0.1", 0, 0), v4("10.0.0.2", 0, 0),
                             v4("10.0.0.1", 0, 0)};
    (void)state;
    assert_int_equal(disc_on_answer(&s, &rules, a, 4, 5, 1000), DISC_CHANGED);
    assert_string_equal(set_text(&s), "10.0.0.1:0 10.0.0.2:0 10.0.0.3:0");
    assert_int_equal(s.updates, 1);
    assert_int_equal(s.answers, 1);
    assert_int_equal(s.nchanges, 0); /* the first answer does not count against the limit */
    assert_int_equal(s.last_change_ms, 1000);
    assert_int_equal(s.ttl_s, 5);
    /* the same addresses in another order: nothing to do */
    struct disc_entry b[] = {v4("10.0.0.2", 0, 0), v4("10.0.0.3", 0, 0), v4("10.0.0.1", 0, 0)};
    assert_int_equal(disc_on_answer(&s, &rules, b, 3, 5, 2000), DISC_SAME);
    assert_int_equal(s.updates, 1);
    assert_int_equal(s.answers, 2);
    assert_int_equal(s.last_answer_ms, 2000);
    /* SRV duplicates add their weights */
    struct disc_state t = {0};
    struct disc_entry c[] = {v4("10.0.0.1", 80, 5), v4("10.0.0.1", 80, 7), v4("10.0.0.1", 81, 1)};
    assert_int_equal(disc_on_answer(&t, &rules, c, 3, 5, 0), DISC_CHANGED);
    assert_int_equal(t.nset, 2);
    assert_int_equal(t.set[0].weight, 12);
    assert_int_equal(t.set[1].port, 81);
    disc_state_free(&s);
    disc_state_free(&t);
    assert_null(s.set);
}

static void test_failures_keep_the_set(void **state)
{
    struct disc_state s = {0};
    struct disc_entry a[] = {v4("10.0.0.1", 0, 0), v4("10.0.0.2", 0, 0)};
    (void)state;
    disc_on_answer(&s, &rules, a, 2, 5, 0);
    assert_false(disc_is_stale(&s));
    assert_int_equal(disc_on_error(&s, &rules, DISC_E_TIMEOUT, "no answer", 100), DISC_KEPT);
    assert_int_equal(disc_on_error(&s, &rules, DISC_E_SERVFAIL, "server failure", 200), DISC_KEPT);
    assert_int_equal(disc_on_error(&s, &rules, DISC_E_EMPTY, NULL, 300), DISC_KEPT);
    assert_int_equal(disc_on_error(&s, &rules, DISC_E_OTHER, "malformed answer", 400), DISC_KEPT);
    /* an hour later it is all still there */
    assert_int_equal(disc_tick(&s, &rules, 3600000), DISC_SAME);
    assert_string_equal(set_text(&s), "10.0.0.1:0 10.0.0.2:0");
    assert_int_equal(s.errors[DISC_E_TIMEOUT], 1);
    assert_int_equal(s.errors[DISC_E_SERVFAIL], 1);
    assert_int_equal(s.errors[DISC_E_EMPTY], 1);
    assert_int_equal(s.errors[DISC_E_OTHER], 1);
    assert_int_equal(s.errors[DISC_E_NXDOMAIN], 0);
    assert_string_equal(s.last_error, "other: malformed answer");
    assert_int_equal(s.last_error_ms, 400);
    assert_true(disc_is_stale(&s));
    assert_int_equal(s.failing_since, 100);
    assert_int_equal(s.updates, 1);
    /* a good answer ends it */
    assert_int_equal(disc_on_answer(&s, &rules, a, 2, 5, 500), DISC_SAME);
    assert_false(disc_is_stale(&s));
    assert_string_equal(s.last_error, "other: malformed answer"); /* kept for the operator */
    disc_state_free(&s);
}

static void test_nxdomain_empties_after_keep_stale(void **state)
{
    struct disc_state s = {0};
    struct disc_entry a[] = {v4("10.0.0.1", 0, 0)};
    (void)state;
    disc_on_answer(&s, &rules, a, 1, 5, 0);
    assert_int_equal(disc_on_error(&s, &rules, DISC_E_NXDOMAIN, NULL, 1000), DISC_KEPT);
    assert_int_equal(disc_next_tick(&s, &rules), 3000);
    assert_int_equal(disc_on_error(&s, &rules, DISC_E_NXDOMAIN, NULL, 2000), DISC_KEPT);
    assert_int_equal(disc_tick(&s, &rules, 2999), DISC_SAME);
    assert_int_equal(s.nset, 1);
    assert_int_equal(disc_tick(&s, &rules, 3000), DISC_EMPTIED);
    assert_int_equal(s.nset, 0);
    assert_int_equal(s.updates, 2);
    assert_int_equal(s.errors[DISC_E_NXDOMAIN], 2);
    assert_false(disc_is_stale(&s)); /* nothing served any more */
    assert_int_equal(disc_next_tick(&s, &rules), 0);
    assert_int_equal(disc_tick(&s, &rules, 9000), DISC_SAME);
    /* the name comes back: applied at once, whatever the limit */
    assert_int_equal(disc_on_answer(&s, &rules, a, 1, 5, 10000), DISC_CHANGED);
    assert_int_equal(s.nset, 1);
    assert_int_equal(s.nchanges, 0);

    /* a good answer in between restarts the clock; so does an empty answer (the name exists) */
    disc_on_error(&s, &rules, DISC_E_NXDOMAIN, NULL, 20000);
    disc_on_answer(&s, &rules, a, 1, 5, 21000);
    disc_on_error(&s, &rules, DISC_E_NXDOMAIN, NULL, 21500);
    assert_int_equal(disc_tick(&s, &rules, 22500), DISC_SAME);
    disc_on_error(&s, &rules, DISC_E_EMPTY, NULL, 23000);
    disc_on_error(&s, &rules, DISC_E_NXDOMAIN, NULL, 23400);
    assert_int_equal(disc_tick(&s, &rules, 25000), DISC_SAME);
    assert_int_equal(disc_tick(&s, &rules, 25400), DISC_EMPTIED);

    /* keep_stale 0: at once */
    struct disc_rules now_rules = rules;
    now_rules.keep_stale_ms = 0;
    disc_on_answer(&s, &now_rules, a, 1, 5, 30000);
    assert_int_equal(disc_on_error(&s, &now_rules, DISC_E_NXDOMAIN, NULL, 30001), DISC_EMPTIED);
    /* NXDOMAIN with nothing to empty changes nothing */
    assert_int_equal(disc_on_error(&s, &now_rules, DISC_E_NXDOMAIN, NULL, 30002), DISC_KEPT);
    disc_state_free(&s);
}

/* The answer flips every 200 ms; at most 3 changes a minute get through. */
static void test_damping_flapping_answer(void **state)
{
    struct disc_state s = {0};
    struct disc_entry a[] = {v4("10.0.0.1", 0, 0), v4("10.0.0.2", 0, 0)};
    struct disc_entry b[] = {v4("10.0.0.1", 0, 0)};
    int changed = 0, held = 0;
    (void)state;
    assert_int_equal(disc_on_answer(&s, &rules, a, 2, 1, 0), DISC_CHANGED); /* first: free */
    for (int i = 1; i <= 50; i++) {                                         /* 10 seconds */
        enum disc_outcome o = i % 2 ? disc_on_answer(&s, &rules, b, 1, 1, i * 200)
                                    : disc_on_answer(&s, &rules, a, 2, 1, i * 200);
        changed += o == DISC_CHANGED;
        held += o == DISC_HELD;
        assert_int_equal(disc_tick(&s, &rules, i * 200 + 100), DISC_SAME);
    }
    assert_int_equal(changed, 3);
    assert_int_equal(s.updates, 4);
    assert_int_equal(s.nchanges, 3);
    /* the set in use is the third change's (b); every "a" after it was held */
    assert_string_equal(set_text(&s), "10.0.0.1:0");
    assert_int_equal(held, 24); /* every "a" from the fourth answer on */
    assert_int_equal(s.damped, 24);
    /* the last answer was "a" (i = 50): held until the first change leaves the minute */
    assert_true(s.holding);
    assert_int_equal(disc_next_tick(&s, &rules), 200 + DISC_WINDOW_MS);
    assert_int_equal(disc_tick(&s, &rules, 200 + DISC_WINDOW_MS - 1), DISC_SAME);
    assert_int_equal(disc_tick(&s, &rules, 200 + DISC_WINDOW_MS), DISC_CHANGED);
    assert_string_equal(set_text(&s), "10.0.0.1:0 10.0.0.2:0");
    assert_false(s.holding);
    assert_int_equal(s.updates, 5);

    /* held, then the flap ends on the set in use: the held answer is dropped */
    assert_int_equal(disc_on_answer(&s, &rules, b, 1, 1, 70000), DISC_CHANGED); /* 2 this minute */
    assert_int_equal(disc_on_answer(&s, &rules, a, 2, 1, 70100), DISC_CHANGED); /* 3 */
    assert_int_equal(disc_on_answer(&s, &rules, b, 1, 1, 70200), DISC_HELD);
    assert_true(s.holding);
    assert_int_equal(disc_on_answer(&s, &rules, a, 2, 1, 70300), DISC_SAME);
    assert_false(s.holding);
    assert_int_equal(disc_next_tick(&s, &rules), 0);
    assert_int_equal(disc_tick(&s, &rules, 200000), DISC_SAME);
    assert_string_equal(set_text(&s), "10.0.0.1:0 10.0.0.2:0");

    /* no limit */
    struct disc_rules free_rules = rules;
    free_rules.max_changes = 0;
    for (int i = 0; i < 20; i++)
        assert_int_equal(
            disc_on_answer(&s, &free_rules, i % 2 ? a : b, i % 2 ? 2 : 1, 1, 300000 + i),
            DISC_CHANGED);
    disc_state_free(&s);
}

static void test_renamed_applies_at_once(void **state)
{
    struct disc_state s = {0};
    struct disc_entry a[] = {v4("10.0.0.1", 0, 0)}, b[] = {v4("10.0.0.9", 0, 0)};
    struct disc_rules one = rules;
    one.max_changes = 1;
    (void)state;
    disc_on_answer(&s, &one, a, 1, 5, 0);
    assert_int_equal(disc_on_answer(&s, &one, b, 1, 5, 10), DISC_CHANGED);
    assert_int_equal(disc_on_answer(&s, &one, a, 1, 5, 20), DISC_HELD);
    disc_renamed(&s); /* a reload asks another name: its first answer counts as a first */
    assert_false(s.holding);
    assert_string_equal(set_text(&s), "10.0.0.9:0"); /* kept until that answer */
    assert_int_equal(disc_on_answer(&s, &one, a, 1, 5, 30), DISC_CHANGED);
    assert_string_equal(set_text(&s), "10.0.0.1:0");
    disc_state_free(&s);
}

static void test_single_address(void **state)
{
    struct disc_state s = {0};
    struct disc_rules r = {.keep_stale_ms = 1000, .single = true};
    struct disc_entry a[] = {v4("10.0.0.5", 0, 0), v4("10.0.0.3", 0, 0), v4("10.0.0.4", 0, 0)};
    struct disc_entry b[] = {v4("10.0.0.4", 0, 0), v4("10.0.0.5", 0, 0)}; /* rotated, .3 gone */
    struct disc_entry c[] = {v4("10.0.0.5", 0, 0), v4("10.0.0.4", 0, 0)};
    (void)state;
    assert_int_equal(disc_on_answer(&s, &r, a, 3, 5, 0), DISC_CHANGED);
    assert_string_equal(set_text(&s), "10.0.0.3:0"); /* the lowest */
    assert_int_equal(disc_on_answer(&s, &r, b, 2, 5, 1), DISC_CHANGED);
    assert_string_equal(set_text(&s), "10.0.0.4:0");
    /* round-robin DNS reorders the answer: the address in use stays */
    assert_int_equal(disc_on_answer(&s, &r, c, 2, 5, 2), DISC_SAME);
    assert_int_equal(disc_on_answer(&s, &r, a, 3, 5, 3), DISC_SAME);
    assert_string_equal(set_text(&s), "10.0.0.4:0");
    disc_state_free(&s);
}

static void test_query_interval(void **state)
{
    struct disc_state s = {0};
    struct disc_rules r = {0};
    struct disc_entry a[] = {v4("10.0.0.1", 0, 0)};
    (void)state;
    assert_int_equal(disc_query_interval(&s, &r, false), 1000); /* nothing known yet */
    assert_int_equal(disc_query_interval(&s, &r, true), 1000);
    disc_on_answer(&s, &r, a, 1, 0, 0);
    assert_int_equal(disc_query_interval(&s, &r, false), 1000);
    disc_on_answer(&s, &r, a, 1, 30, 0);
    assert_int_equal(disc_query_interval(&s, &r, false), 30000);
    assert_int_equal(disc_query_interval(&s, &r, true), DISC_FAIL_RETRY_MS);
    disc_on_answer(&s, &r, a, 1, 86400, 0);
    assert_int_equal(disc_query_interval(&s, &r, false), 60000);
    r.interval_ms = 250;
    assert_int_equal(disc_query_interval(&s, &r, false), 250);
    assert_int_equal(disc_query_interval(&s, &r, true), 250);
    r.interval_ms = 120000;
    assert_int_equal(disc_query_interval(&s, &r, false), 120000);
    assert_int_equal(disc_query_interval(&s, &r, true), DISC_FAIL_RETRY_MS);
    disc_state_free(&s);
}

static void test_log_once_a_minute(void **state)
{
    struct disc_state s = {0};
    uint32_t sup = 99;
    (void)state;
    assert_true(disc_log_allow(&s, 1000, &sup));
    assert_int_equal(sup, 0);
    for (int i = 1; i <= 59; i++)
        assert_false(disc_log_allow(&s, 1000 + i * 1000, &sup));
    assert_true(disc_log_allow(&s, 61000, &sup));
    assert_int_equal(sup, 59);
    assert_false(disc_log_allow(&s, 61001, &sup));
}

/* clang-format off */
static const char pools_text[] =
    "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"api\"; } );\n"
    "zones = { zone-a = [ \"127.0.0.0/30\" ]; zone-b = [ \"127.0.0.4/30\", \"fd00::/64\" ]; };\n"
    "pools = (\n"
    "  { name = \"api\"; discover = { name = \"api.test\"; port = 8080;\n"
    "      template = { weight = 40; region = \"r1\"; state = \"drain\"; }; };\n"
    "    backends = ( { name = \"b1\"; address = \"127.0.0.2:8080\"; },\n"
    "                 { name = \"db\"; address = \"db-1.test:5432\"; weight = 7; } ); },\n"
    "  { name = \"srv\"; discover = { name = \"_h._tcp.api.test\"; type = \"SRV\";\n"
    "      template = { zone = \"fixed\"; }; }; },\n"
    "  { name = \"srv2\"; discover = { name = \"_h._tcp.api.test\"; type = \"SRV\"; }; }\n"
    ");\n";
/* clang-format on */

static void test_backends_from_entries(void **state)
{
    struct cfg_errors errs = {0};
    struct cfg *cfg = cfg_load_string(pools_text, "t.conf", &errs);
    struct cfg_backend out[8];
    char names[8][CFG_NAME_MAX];
    (void)state;
    for (int i = 0; i < errs.n; i++)
        print_message("%s\n", errs.msgs[i]);
    assert_non_null(cfg);

    /* A: named after the address, the template's settings, the zone by block */
    struct disc_entry a[] = {v4("127.0.0.1", 0, 0), v4("127.0.0.2", 0, 0), v4("127.0.0.5", 0, 0),
                             v4("127.0.0.9", 0, 0), v6("fd00::1", 0)};
    int n = disc_backends(cfg, &cfg->pools[0], a, 5, out, names);
    assert_int_equal(n, 4); /* 127.0.0.2:8080 is b1's: the file's backend wins */
    assert_string_equal(out[0].name, "127.0.0.1:8080");
    assert_string_equal(out[0].addr.text, "127.0.0.1:8080");
    assert_int_equal(ntohs(((struct sockaddr_in *)&out[0].addr.sa)->sin_port), 8080);
    assert_int_equal(out[0].weight, 40);
    assert_int_equal(out[0].state, CFG_ADMIN_DRAIN);
    assert_string_equal(out[0].zone, "zone-a");
    assert_string_equal(out[0].region, "r1");
    assert_true(out[0].discovered);
    assert_int_equal(out[0].line, 4);
    assert_string_equal(out[1].name, "127.0.0.5:8080");
    assert_string_equal(out[1].zone, "zone-b");
    assert_string_equal(out[2].name, "127.0.0.9:8080");
    assert_string_equal(out[2].zone, "");
    assert_string_equal(out[3].name, "[fd00::1]:8080");
    assert_int_equal(out[3].addr.sa.ss_family, AF_INET6);
    assert_string_equal(out[3].zone, "zone-b");

    /* SRV: port and weight from the records, the template's zone over the block's */
    struct disc_entry s[] = {v4("127.0.0.1", 9001, 0), v4("127.0.0.5", 9002, 5),
                             v4("127.0.0.6", 9003, 65535)};
    n = disc_backends(cfg, &cfg->pools[1], s, 3, out, names);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].name, "127.0.0.1:9001");
    assert_int_equal(out[0].weight, 1); /* 0 is the smallest share, not none */
    assert_int_equal(out[1].weight, 1); /* 5 of 65535, scaled to at most 1000 */
    assert_int_equal(out[2].weight, 1000);
    assert_string_equal(out[1].zone, "fixed");
    struct disc_entry s2[] = {v4("127.0.0.1", 9001, 10), v4("127.0.0.5", 9002, 500)};
    n = disc_backends(cfg, &cfg->pools[2], s2, 2, out, names);
    assert_int_equal(out[0].weight, 10); /* within 0-1000: as they are */
    assert_int_equal(out[1].weight, 500);
    assert_string_equal(out[1].zone, "zone-b");

    /* a named backend: its name and text stay, the address and zone come from the answer */
    struct disc_entry d = v4("127.0.0.6", 0, 0);
    assert_int_equal(cfg->pools[0].nnamed, 1);
    disc_named_backend(cfg, &cfg->pools[0].named[0], &d, &out[0]);
    assert_string_equal(out[0].name, "db");
    assert_string_equal(out[0].addr.text, "db-1.test:5432");
    assert_string_equal(out[0].host, "db-1.test");
    assert_int_equal(out[0].addr.len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&out[0].addr.sa)->sin_port), 5432);
    assert_int_equal(out[0].weight, 7);
    assert_string_equal(out[0].zone, "zone-b");
    assert_false(out[0].discovered);
    cfg_free(cfg);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_answer_sorted_and_merged),
        cmocka_unit_test(test_failures_keep_the_set),
        cmocka_unit_test(test_nxdomain_empties_after_keep_stale),
        cmocka_unit_test(test_damping_flapping_answer),
        cmocka_unit_test(test_renamed_applies_at_once),
        cmocka_unit_test(test_single_address),
        cmocka_unit_test(test_query_interval),
        cmocka_unit_test(test_log_once_a_minute),
        cmocka_unit_test(test_backends_from_entries),
    };
    return cmocka_run_group_tests_name("discover", tests, NULL, NULL);
}
