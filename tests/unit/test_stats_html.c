/*
 * test_stats_html.c - the headers the stats page is served with: which
 * inline elements its Content-Security-Policy admits (by SHA-256 digest),
 * and that the embedded page is whole.
 *
 * The digests below are the base64 SHA-256 of "", "abc" and "x{}",
 * computed apart from OpenSSL (Python's hashlib).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lb/stats.h"

#define D_EMPTY "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
#define D_ABC   "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"
#define D_X     "'sha256-qiGgMe/6B9BMVLYDjsohH5degQwxw2KTexjZztZSiBY='"

#define TAIL                                                                                       \
    "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "                   \
    "frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: "               \
    "no-referrer\r\n"

static const struct {
    const char *page;
    const char *script; /* what script-src must say */
    const char *style;  /* what style-src must say */
} cases[] = {
    {"<script>abc</script><style>x{}</style>", D_ABC, D_X},
    {"<!doctype html><style></style><p>hi<script>abc</script>", D_ABC, D_EMPTY},
    {"<script>abc</script><script></script>", D_ABC " " D_EMPTY, "'none'"},
    /* only elements written without attributes are admitted */
    {"<script src=\"x.js\"></script><style media=x>x{}</style>", "'none'", "'none'"},
    /* not closed: nothing to admit */
    {"<script>abc", "'none'", "'none'"},
    {"", "'none'", "'none'"},
    /* the text is taken to the first closing tag, as the HTML parser does */
    {"<script>abc</script>x{}</script>", D_ABC, "'none'"},
};

static void test_csp_digests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sbuf out = {0}, want = {0};
        stats_html_headers_of(cases[i].page, strlen(cases[i].page), &out);
        sbuf_printf(&want,
                    "Content-Security-Policy: default-src 'none'; script-src %s; style-src %s" TAIL,
                    cases[i].script, cases[i].style);
        assert_false(out.oom);
        if (strcmp(out.p, want.p) != 0)
            fail_msg("page %zu %s\n got: %s\nwant: %s", i, cases[i].page, out.p, want.p);
        sbuf_free(&out);
        sbuf_free(&want);
    }
}

/* How many digests the directive NAME of the policy in HDR lists. */
static int digests_in(const char *hdr, const char *name)
{
    const char *d = strstr(hdr, name), *end = d ? strchr(d, ';') : NULL;
    int n = 0;
    if (!d || !end)
        return -1;
    for (const char *p = d; (p = strstr(p, "'sha256-")) && p < end; p++)
        n++;
    return n;
}

/* The page as served: whole (ends with </html>), with one script and one
 * style, both admitted by the policy it is served with. */
static void test_embedded_page(void **state)
{
    (void)state;
    struct sbuf page = {0}, hdr = {0};
    stats_html(&page);
    stats_html_headers(&hdr);
    assert_non_null(page.p);
    assert_true(page.len > 1000);
    assert_int_equal(strncmp(page.p, "<!doctype html>", 15), 0);
    assert_non_null(strstr(page.p + page.len - 10, "</html>"));
    assert_int_equal(strlen(page.p), page.len); /* no NUL inside */
    assert_int_equal(digests_in(hdr.p, "script-src"), 1);
    assert_int_equal(digests_in(hdr.p, "style-src"), 1);
    sbuf_free(&page);
    sbuf_free(&hdr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csp_digests),
        cmocka_unit_test(test_embedded_page),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
