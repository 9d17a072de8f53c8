/*
 * test_hashkey.c - the key a request is hashed by (hashkey.c): header:NAME,
 * cookie:NAME, query:NAME, path and client-ip, and the hash itself.
 *
 * Pools come from a config string (cfg_load_string), so hash_key is parsed
 * as lb parses it; every request is a real head parsed by h1_parse_request
 * and split by route_target_of, so the slices hashkey.c sees are the ones
 * it sees in lb. Each row names the key it wants, or none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/cfg.h"
#include "lb/core/h1.h"
#include "lb/hashkey.h"
#include "lb/route.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define NONE NULL /* the request has no key */

/* A config whose one pool hashes on HASH_KEY ("cookie:sid", "path", ...). */
static struct cfg *pool_for(const char *hash_key)
{
    char text[512];
    snprintf(text, sizeof(text),
             "listeners = ( { name = \"web\"; listen = \"127.0.0.1:8080\"; pool = \"p\"; } );\n"
             "pools = ( { name = \"p\"; balance = \"hash\"; hash_key = \"%s\";\n"
             "  backends = ( { name = \"a\"; address = \"127.0.0.1:10000\"; } ); } );\n",
             hash_key);
    struct cfg_errors e = {0};
    struct cfg *cfg = cfg_load_string(text, "hashkey.conf", &e);
    for (int i = 0; i < e.n; i++)
        print_error("config: %s\n", e.msgs[i]);
    assert_int_equal(e.n, 0);
    assert_non_null(cfg);
    cfg_errors_free(&e);
    return cfg;
}

struct row {
    const char *name;
    const char *head; /* a complete request head */
    const char *want; /* the key's bytes, or NONE */
};

/* Run ROWS against a pool hashing on HASH_KEY, the client at CLIENT_IP. IN_HEAD: the key
 * must be a slice of the head, not a copy (but for the "/" of an absolute-form target without
 * a path). */
static void run_rows(const char *hash_key, const struct row *rows, size_t n, const char *client_ip,
                     bool in_head)
{
    struct cfg *cfg = pool_for(hash_key);
    const struct cfg_pool *pool = &cfg->pools[0];
    for (size_t i = 0; i < n; i++) {
        struct h1_request req;
        struct route_target t;
        size_t scanned = 0, len = strlen(rows[i].head);
        int r = h1_parse_request(rows[i].head, len, &scanned, &req);
        if (r != (int)len)
            fail_msg("%s %s: h1_parse_request gave %d, want %zu", hash_key, rows[i].name, r, len);
        route_target_of(&req, &t);
        const char *key = NULL;
        size_t klen = 0;
        bool found = hashkey_find(pool, &req, &t, client_ip, &key, &klen);
        if (!rows[i].want) {
            if (found)
                fail_msg("%s %s: key \"%.*s\", want none", hash_key, rows[i].name, (int)klen, key);
            uint64_t h = 0;
            assert_false(hashkey_of(pool, &req, &t, client_ip, &h));
            continue;
        }
        if (!found)
            fail_msg("%s %s: no key, want \"%s\"", hash_key, rows[i].name, rows[i].want);
        if (klen != strlen(rows[i].want) || memcmp(key, rows[i].want, klen) != 0)
            fail_msg("%s %s: key \"%.*s\", want \"%s\"", hash_key, rows[i].name, (int)klen, key,
                     rows[i].want);
        /* a slice of the head, and hashkey_of hashes exactly it */
        if (in_head && klen && !(klen == 1 && key[0] == '/' && t.slash))
            assert_true(key >= rows[i].head && key + klen <= rows[i].head + len);
        uint64_t h = 0;
        assert_true(hashkey_of(pool, &req, &t, client_ip, &h));
        assert_true(h == hashkey_bytes(rows[i].want, strlen(rows[i].want)));
    }
    cfg_free(cfg);
}

#define GET(target, headers) "GET " target " HTTP/1.1\r\nHost: h\r\n" headers "\r\n"

static void test_header(void **state)
{
    (void)state;
    static const struct row rows[] = {
        {"present", GET("/", "X-Partition-Key: tenant-42\r\n"), "tenant-42"},
        {"the first of two", GET("/", "X-Partition-Key: one\r\nX-Partition-Key: two\r\n"), "one"},
        {"name in lower case", GET("/", "x-partition-key: lower\r\n"), "lower"},
        {"name in upper case", GET("/", "X-PARTITION-KEY: upper\r\n"), "upper"},
        {"value as sent, OWS trimmed", GET("/", "X-Partition-Key:   Mixed Case  \r\n"),
         "Mixed Case"},
        {"empty value", GET("/", "X-Partition-Key:\r\n"), ""},
        {"after other headers", GET("/", "Accept: */*\r\nX-Partition-Key: late\r\n"), "late"},
        {"absent", GET("/", "Accept: */*\r\n"), NONE},
        {"a longer name", GET("/", "X-Partition-Keys: no\r\n"), NONE},
        {"a shorter name", GET("/", "X-Partition-Ke: no\r\n"), NONE},
        {"a longer name first", GET("/", "X-Partition-Keyx: no\r\nX-Partition-Key: yes\r\n"),
         "yes"},
        {"not from the query", GET("/?X-Partition-Key=q", ""), NONE},
    };
    run_rows("header:X-Partition-Key", rows, ARRAY_LEN(rows), "192.0.2.1", true);
}

static void test_cookie(void **state)
{
    (void)state;
    static const struct row rows[] = {
        {"alone", GET("/", "Cookie: sid=abc\r\n"), "abc"},
        {"among others", GET("/", "Cookie: a=1; sid=abc; b=2\r\n"), "abc"},
        {"last", GET("/", "Cookie: a=1; sid=last\r\n"), "last"},
        {"no space after ;", GET("/", "Cookie: a=1;sid=tight;b=2\r\n"), "tight"},
        {"spaces around", GET("/", "Cookie: a=1 ;   sid=spaced   ; b=2\r\n"), "spaced"},
        {"tab before", GET("/", "Cookie: a=1;\tsid=tab\r\n"), "tab"},
        {"in the second Cookie header", GET("/", "Cookie: a=1\r\nCookie: sid=second\r\n"),
         "second"},
        {"the first Cookie header wins", GET("/", "Cookie: sid=one\r\nCookie: sid=two\r\n"), "one"},
        {"header name in lower case", GET("/", "cookie: sid=lc\r\n"), "lc"},
        {"empty value", GET("/", "Cookie: sid=; a=1\r\n"), ""},
        {"empty value last", GET("/", "Cookie: a=1; sid=\r\n"), ""},
        {"value with =", GET("/", "Cookie: sid=a=b\r\n"), "a=b"},
        {"quoted value kept raw", GET("/", "Cookie: sid=\"q\"\r\n"), "\"q\""},
        {"similar names first", GET("/", "Cookie: xsid=1; sid2=2; si=3; sid=4\r\n"), "4"},
        {"only similar names", GET("/", "Cookie: xsid=1; sid2=2; si=3\r\n"), NONE},
        {"name is case-sensitive", GET("/", "Cookie: SID=upper\r\n"), NONE},
        {"name without =", GET("/", "Cookie: sid; a=1\r\n"), NONE},
        {"empty items", GET("/", "Cookie: ;; sid=x;;\r\n"), "x"},
        {"no Cookie header", GET("/", "X-Sid: sid=abc\r\n"), NONE},
        {"Set-Cookie is not Cookie", GET("/", "Set-Cookie: sid=abc\r\n"), NONE},
        {"not from the query", GET("/?sid=q", ""), NONE},
    };
    run_rows("cookie:sid", rows, ARRAY_LEN(rows), "192.0.2.1", true);
}

static void test_query(void **state)
{
    (void)state;
    static const struct row rows[] = {
        {"alone", GET("/p?k=v", ""), "v"},
        {"the first of two", GET("/p?k=one&k=two", ""), "one"},
        {"after others", GET("/p?a=1&b=2&k=third", ""), "third"},
        {"raw, not decoded", GET("/p?k=a%20b%2Fc+d", ""), "a%20b%2Fc+d"},
        {"no value, then others", GET("/p?k&x=1", ""), ""},
        {"no value, last", GET("/p?x=1&k", ""), ""},
        {"empty value", GET("/p?k=&x=1", ""), ""},
        {"value with =", GET("/p?k=a=b", ""), "a=b"},
        {"similar names first", GET("/p?kk=1&xk=2&k2=3&k=4", ""), "4"},
        {"only similar names", GET("/p?kk=1&xk=2&k2=3", ""), NONE},
        {"name is case-sensitive", GET("/p?K=1", ""), NONE},
        {"empty items", GET("/p?&&k=x&", ""), "x"},
        {"no query", GET("/p", ""), NONE},
        {"empty query", GET("/p?", ""), NONE},
        {"other keys only", GET("/p?x=1&y=2", ""), NONE},
        {"k= in the path is not the query", GET("/k=v/p", ""), NONE},
        {"a second ? is part of the query", GET("/p?x=?&k=v?w", ""), "v?w"},
        {"not from a header", GET("/p", "k: v\r\n"), NONE},
        {"absolute-form", GET("http://example.com/p?k=abs", ""), "abs"},
        {"absolute-form, empty path", GET("http://example.com?k=nopath", ""), "nopath"},
        {"absolute-form with port", GET("http://example.com:8080?a=1&k=port", ""), "port"},
        {"absolute-form, no query", GET("http://example.com/p", ""), NONE},
        {"absolute-form, k= in the authority", GET("http://k=v.example.com/p", ""), NONE},
    };
    run_rows("query:k", rows, ARRAY_LEN(rows), "192.0.2.1", true);
}

static void test_path(void **state)
{
    (void)state;
    static const struct row rows[] = {
        {"plain", GET("/api/v1/users", ""), "/api/v1/users"},
        {"without the query", GET("/api/v1/users?page=2", ""), "/api/v1/users"},
        {"root", GET("/", ""), "/"},
        {"root with a query", GET("/?q=1", ""), "/"},
        {"trailing slash kept", GET("/a/", ""), "/a/"},
        {"not normalised", GET("/a/../b//c", ""), "/a/../b//c"},
        {"percent-encoding kept", GET("/a%2Fb", ""), "/a%2Fb"},
        {"case kept", GET("/API/Users", ""), "/API/Users"},
        {"up to the first ?", GET("/a?b?c", ""), "/a"},
        {"absolute-form", GET("http://example.com/p/q?x=1", ""), "/p/q"},
        {"absolute-form, no path", GET("http://example.com", ""), "/"},
        {"absolute-form, no path, a query", GET("http://example.com?q", ""), "/"},
        {"absolute-form https with port", GET("https://example.com:8443/s", ""), "/s"},
        {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "*"},
    };
    run_rows("path", rows, ARRAY_LEN(rows), "192.0.2.1", true);
}

static void test_client_ip(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
    } ips[] = {{"192.0.2.1"}, {"2001:db8::1"}, {"::ffff:198.51.100.7"}};
    for (size_t i = 0; i < ARRAY_LEN(ips); i++) {
        /* whatever the request says, the client's address */
        const struct row rows[] = {
            {"plain", GET("/p?ip=1", "X-Forwarded-For: 203.0.113.9\r\n"), ips[i].ip},
        };
        run_rows("client-ip", rows, ARRAY_LEN(rows), ips[i].ip, false);
    }
}

/* FNV-1a then MurmurHash3's fmix64: values fixed for good, since ring points and therefore
 * which backend holds which key depend on them. Computed independently (Python). */
static void test_hash_known_values(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t h;
    } rows[] = {
        {"", 0xefd01f60ba992926ull},          {"a", 0x82a2a958a9bece5bull},
        {"b", 0x6e673288764ad2d0ull},         {"key-1", 0xa002e14b20bb64ecull},
        {"key-2", 0xe8612b9ae0330532ull},     {"X-Partition-Key", 0x62e297815660be67ull},
        {"tenant-42", 0x2109a24510bb8a82ull}, {"b0#0", 0x795fe381668b9d96ull},
        {"192.0.2.1", 0x8fc433616f773343ull}, {"/api/v1/users", 0xdfd49c1bea743b39ull},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        uint64_t h = hashkey_bytes(rows[i].s, strlen(rows[i].s));
        if (h != rows[i].h)
            fail_msg("hashkey_bytes(\"%s\") = 0x%016llx, want 0x%016llx", rows[i].s,
                     (unsigned long long)h, (unsigned long long)rows[i].h);
    }
    /* the length counts, not a NUL: a slice of a larger buffer hashes as its bytes */
    assert_true(hashkey_bytes("key-12", 5) == 0xa002e14b20bb64ecull);
    /* NUL bytes are bytes */
    assert_true(hashkey_bytes("a\0", 2) != hashkey_bytes("a", 1));
}

/* Close inputs land far apart: keys differing in one character differ in about half of the
 * 64 bits (the finaliser's job); over 1000 neighbouring pairs, never fewer than 12. */
static void test_hash_spreads_neighbours(void **state)
{
    (void)state;
    int min_bits = 64, total = 0;
    for (int i = 0; i < 1000; i++) {
        char a[32], b[32];
        int la = snprintf(a, sizeof(a), "key-%d", i), lb = snprintf(b, sizeof(b), "key-%d", i + 1);
        int bits =
            __builtin_popcountll(hashkey_bytes(a, (size_t)la) ^ hashkey_bytes(b, (size_t)lb));
        total += bits;
        if (bits < min_bits)
            min_bits = bits;
    }
    print_message("neighbouring keys: %.1f bits differ on average, %d at least\n", total / 1000.0,
                  min_bits);
    assert_true(min_bits >= 12);
    assert_true(total > 1000 * 28 && total < 1000 * 36);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_hash_known_values),
        cmocka_unit_test(test_hash_spreads_neighbours),
    };
    return cmocka_run_group_tests_name("hashkey", tests, NULL, NULL);
}
