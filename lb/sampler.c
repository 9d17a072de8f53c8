/*
 * sampler.c - the once-a-second look at the pools (see sampler.h).
 */
#include "lb/sampler.h"

#include "lb/core/clock.h"
#include "lb/core/container.h"
#include "lb/pick.h"

#define SAMPLER_INTERVAL_S 1.0

uint64_t sampler_total(const struct rt_backend *be)
{
    uint64_t n = 0;
    for (int w = 0; w < be->nworkers; w++)
        n += cnt_get(&be->cnt[w].requests);
    return n;
}

uint64_t sampler_requests(const struct sampler *s, const struct rt_backend *be)
{
    if (!s->ticks)
        return 0;
    uint64_t last = s->ticks - 1;
    uint64_t first = last >= SAMPLER_WINDOW ? last - SAMPLER_WINDOW : 0;
    return be->req_hist[last % RT_HIST] - be->req_hist[first % RT_HIST];
}

static void sample(struct sampler *s)
{
    struct rt *rt = atomic_load(&s->lb->rt);
    int64_t now = clock_mono_ms();
    unsigned slot = (unsigned)(s->ticks % RT_HIST);
    for (int i = 0; i < rt->npools; i++) {
        struct rt_pool *p = &rt->pools[i];
        for (int j = 0; j < p->n; j++) {
            struct rt_backend *be = p->be[j];
            be->req_hist[slot] = sampler_total(be);
            brk_tick(&be->brk, &p->cfg->breaker, now, be->pool, be->name);
        }
        struct pick_state st;
        pick_refresh(p, now, &st);
        pick_note_panic(p, st.panic);
    }
    s->ticks++;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sample(container_of(w, struct sampler, tm));
}

void sampler_start(struct sampler *s, struct lb *lb, struct ev_loop *loop)
{
    s->lb = lb;
    s->ticks = 0;
    sample(s);
    ev_timer_init(&s->tm, on_tick, SAMPLER_INTERVAL_S, SAMPLER_INTERVAL_S);
    ev_timer_start(loop, &s->tm);
}

void sampler_stop(struct sampler *s, struct ev_loop *loop)
{
    ev_timer_stop(loop, &s->tm);
}
