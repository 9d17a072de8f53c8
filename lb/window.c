/*
 * window.c - recent latency and history (see window.h).
 */
#include "lb/window.h"

#include <math.h>
#include <string.h>

#define WIN_LOW_US  50.0 /* bucket 0: below this */
#define WIN_HIGH_US 60e6 /* the last bucket: from this on */

/* log(high / low) / (WIN_BUCKETS - 2): buckets 1..WIN_BUCKETS-2 split the range evenly */
static double win_step(void)
{
    return log(WIN_HIGH_US / WIN_LOW_US) / (WIN_BUCKETS - 2);
}

int win_bucket_of_us(double us)
{
    if (us < WIN_LOW_US)
        return 0;
    if (us >= WIN_HIGH_US)
        return WIN_BUCKETS - 1;
    int i = 1 + (int)(log(us / WIN_LOW_US) / win_step());
    return i < WIN_BUCKETS - 1 ? i : WIN_BUCKETS - 2;
}

double win_bucket_upper_us(int i)
{
    if (i <= 0)
        return WIN_LOW_US;
    if (i >= WIN_BUCKETS - 1)
        return INFINITY;
    return WIN_LOW_US * exp(i * win_step());
}

static double bucket_lower(int i)
{
    return i <= 0 ? 0 : win_bucket_upper_us(i - 1);
}

uint64_t win_count(const struct win_hist *h)
{
    uint64_t n = 0;
    for (int i = 0; i < WIN_BUCKETS; i++)
        n += h->c[i];
    return n;
}

double win_quantile(const struct win_hist *h, double q)
{
    uint64_t total = win_count(h);
    if (!total)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (int i = 0; i < WIN_BUCKETS; i++) {
        if (!h->c[i])
            continue;
        if (seen + h->c[i] >= rank) {
            double lo = bucket_lower(i), hi = win_bucket_upper_us(i);
            if (isinf(hi))
                return lo;
            double frac = (rank - seen) / h->c[i];
            return lo + (frac < 0 ? 0 : frac) * (hi - lo);
        }
        seen += h->c[i];
    }
    return 0;
}

void win_add(struct win_hist *to, const struct win_hist *from)
{
    for (int i = 0; i < WIN_BUCKETS; i++)
        to->c[i] += from->c[i];
}

/* The coarse bucket of each fine one, by its middle (computed once). */
static const uint8_t *fine_to_coarse(void)
{
    static uint8_t map[HIST_BUCKETS];
    static bool done;
    if (!done) { /* first from the main thread, before anything else reads it */
        for (unsigned i = 0; i < HIST_BUCKETS; i++) {
            double lo, width;
            hist_bucket_range(i, &lo, &width);
            map[i] = (uint8_t)win_bucket_of_us(lo + width / 2);
        }
        done = true;
    }
    return map;
}

/* Fold FINE into 64-bit coarse counts. */
static void fold64(uint64_t *out, const uint64_t *fine)
{
    const uint8_t *map = fine_to_coarse();
    memset(out, 0, WIN_BUCKETS * sizeof(*out));
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        out[map[i]] += fine[i];
}

static uint32_t sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void win_fold(struct win_hist *out, const uint64_t *fine)
{
    uint64_t c[WIN_BUCKETS];
    fold64(c, fine);
    for (int i = 0; i < WIN_BUCKETS; i++)
        out->c[i] = sat32(c[i]);
}

void window_push(struct window *w, const struct win_sec *sec)
{
    w->sec[w->ticks % WIN_SECS] = sec->h;
    win_add(&w->cur_tens, &sec->h);
    if (w->ticks % 10 == 9) { /* ten seconds filled */
        w->tens[(w->ticks / 10) % WIN_TENS] = w->cur_tens;
        memset(&w->cur_tens, 0, sizeof(w->cur_tens));
    }
    struct win_point *p = &w->pts[w->ticks % WIN_POINTS];
    p->requests = sat32(sec->requests);
    p->errors = sat32(sec->errors);
    p->p99_us = win_count(&sec->h) ? (uint32_t)win_quantile(&sec->h, 0.99) : 0;
    w->ticks++;
}

void window_tick(struct window *w, const uint64_t *fine_now, uint64_t requests, uint64_t errors,
                 struct win_sec *out)
{
    uint64_t now[WIN_BUCKETS];
    struct win_sec sec;
    fold64(now, fine_now);
    for (int i = 0; i < WIN_BUCKETS; i++) {
        /* counters only grow; one that went back started afresh: no change this second */
        sec.h.c[i] = w->primed && now[i] >= w->prev[i] ? sat32(now[i] - w->prev[i]) : 0;
        w->prev[i] = now[i];
    }
    sec.requests = w->primed && requests >= w->prev_requests ? requests - w->prev_requests : 0;
    sec.errors = w->primed && errors >= w->prev_errors ? errors - w->prev_errors : 0;
    w->prev_requests = requests;
    w->prev_errors = errors;
    w->primed = true;
    window_push(w, &sec);
    if (out)
        *out = sec;
}

void window_last(const struct window *w, int seconds, struct win_hist *out)
{
    memset(out, 0, sizeof(*out));
    if (seconds <= WIN_SECS) {
        uint64_t n = w->ticks < (uint64_t)seconds ? w->ticks : (uint64_t)seconds;
        for (uint64_t k = 0; k < n; k++)
            win_add(out, &w->sec[(w->ticks - 1 - k) % WIN_SECS]);
        return;
    }
    /* the ten-second interval being filled, and enough full ones before it */
    int filling = (int)(w->ticks % 10);
    uint64_t full = w->ticks / 10;
    uint64_t want = seconds > filling ? (uint64_t)(seconds - filling + 9) / 10 : 0;
    if (want > WIN_TENS)
        want = WIN_TENS;
    if (want > full)
        want = full;
    win_add(out, &w->cur_tens);
    for (uint64_t k = 0; k < want; k++)
        win_add(out, &w->tens[(full - 1 - k) % WIN_TENS]);
}

void window_counts(const struct window *w, int seconds, uint64_t *requests, uint64_t *errors)
{
    *requests = *errors = 0;
    struct win_point p;
    for (int k = 0; k < seconds && window_point(w, k, &p); k++) {
        *requests += p.requests;
        *errors += p.errors;
    }
}

bool window_point(const struct window *w, int k, struct win_point *out)
{
    if (k < 0 || (uint64_t)k >= w->ticks || k >= WIN_POINTS)
        return false;
    *out = w->pts[(w->ticks - 1 - (uint64_t)k) % WIN_POINTS];
    return true;
}
