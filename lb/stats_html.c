/*
 * stats_html.c - the live stats page. It is static: a script on it polls
 * /stats.json every second and redraws, so the page never reloads.
 *
 * The page is lb/stats_page.html, embedded by lb/stats_page.S.
 */
#include <stdint.h>

#include "lb/stats.h"

extern const char stats_page[]; /* lb/stats_page.S */
extern const uint64_t stats_page_len;

void stats_html(struct sbuf *out)
{
    sbuf_put(out, stats_page, (size_t)stats_page_len);
}
