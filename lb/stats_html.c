/*
 * stats_html.c - the live stats page and the headers it is served with.
 *
 * The page is lb/stats_page.html, embedded by lb/stats_page.S. It is static:
 * its script polls /stats.json, /api/history and /api/events every second
 * and updates itself, so the page never reloads.
 *
 * Its headers carry a Content-Security-Policy that allows exactly the
 * page's own inline style and script (by their SHA-256 digests), fetches
 * from the admin port itself, and no framing. The page has buttons that
 * drain backends: no other site may frame it to steer a click
 * (frame-ancestors), and a string from the config or the network that ever
 * reached the DOM as markup could not run a script of its own.
 */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lb/stats.h"

extern const char stats_page[]; /* lb/stats_page.S */
extern const uint64_t stats_page_len;

void stats_html(struct sbuf *out)
{
    sbuf_put(out, stats_page, (size_t)stats_page_len);
}

/* Append " 'sha256-BASE64'", the CSP source of an element whose text is T[0..N). */
static void csp_digest(struct sbuf *out, const char *t, size_t n)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned char b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];

    SHA256((const unsigned char *)t, n, md);
    EVP_EncodeBlock(b64, md, SHA256_DIGEST_LENGTH);
    sbuf_printf(out, " 'sha256-%s'", (const char *)b64);
}

/*
 * The digests of every element written exactly "<TAG>...</TAG>" in PAGE
 * (one with attributes, such as <script src=...>, gets none, and the
 * browser refuses it). Appends " 'none'" when there is no such element.
 */
static void csp_sources(struct sbuf *out, const char *page, size_t len, const char *tag)
{
    char open[16], close[16];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    size_t no = strlen(open), nc = strlen(close);
    const char *p = page, *end = page + len;
    int found = 0;

    for (;;) {
        const char *a = memmem(p, (size_t)(end - p), open, no);
        if (!a)
            break;
        a += no;
        const char *b = memmem(a, (size_t)(end - a), close, nc);
        if (!b)
            break;
        csp_digest(out, a, (size_t)(b - a));
        found++;
        p = b + nc;
    }
    if (!found)
        sbuf_puts(out, " 'none'");
}

void stats_html_headers_of(const char *page, size_t len, struct sbuf *out)
{
    sbuf_puts(out, "Content-Security-Policy: default-src 'none'; script-src");
    csp_sources(out, page, len, "script");
    sbuf_puts(out, "; style-src");
    csp_sources(out, page, len, "style");
    sbuf_puts(out, "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'none'\r\n"
                   "X-Content-Type-Options: nosniff\r\n"
                   "Referrer-Policy: no-referrer\r\n");
}

void stats_html_headers(struct sbuf *out)
{
    stats_html_headers_of(stats_page, (size_t)stats_page_len, out);
}
