/*
 * sampler.c - the once-a-second look at the pools (see sampler.h).
 */
#include "lb/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "lb/core/clock.h"
#include "lb/core/container.h"
#include "lb/core/log.h"
#include "lb/outlier.h"
#include "lb/pick.h"
#include "lb/tally.h"
#include "lb/worker.h"

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

static struct window *find(const struct sampler_win *v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return v[i].w;
    return NULL;
}

const struct window *sampler_pool_window(const struct sampler *s, const char *name)
{
    return find(s->pools, s->npools, name);
}

const struct window *sampler_listener_window(const struct sampler *s, const char *name)
{
    return find(s->listeners, s->nlisteners, name);
}

/*
 * Make *V (of *N) hold a window for each of the N names NAME(i), in that
 * order: windows of names kept are kept, the others freed. On allocation
 * failure the old set stays (the sample is skipped for them).
 */
static int windows_follow(struct sampler_win **v, int *n, int want,
                          const char *(*name)(const struct rt *, int), const struct rt *rt)
{
    bool same = *n == want;
    for (int i = 0; same && i < want; i++)
        same = strcmp((*v)[i].name, name(rt, i)) == 0;
    if (same)
        return 0;
    struct sampler_win *nv = calloc((size_t)(want ? want : 1), sizeof(*nv));
    if (!nv)
        return -1;
    /* first the new names' windows, so that a failure leaves the old set whole */
    for (int i = 0; i < want; i++) {
        snprintf(nv[i].name, sizeof(nv[i].name), "%s", name(rt, i));
        if (!find(*v, *n, nv[i].name) && !(nv[i].w = calloc(1, sizeof(*nv[i].w)))) {
            for (int k = 0; k < i; k++)
                free(nv[k].w);
            free(nv);
            return -1;
        }
    }
    for (int i = 0; i < want; i++)
        for (int j = 0; !nv[i].w && j < *n; j++)
            if ((*v)[j].w && strcmp((*v)[j].name, nv[i].name) == 0) {
                nv[i].w = (*v)[j].w;
                (*v)[j].w = NULL;
            }
    for (int j = 0; j < *n; j++)
        free((*v)[j].w);
    free(*v);
    *v = nv;
    *n = want;
    return 0;
}

static const char *pool_name(const struct rt *rt, int i)
{
    return rt->pools[i].cfg->name;
}

static const char *listener_name(const struct rt *rt, int i)
{
    return rt->cfg->listeners[i].name;
}

static void sample_backend(struct rt_backend *be)
{
    if (!be->win && !(be->win = calloc(1, sizeof(*be->win))))
        return;
    struct be_sum s;
    tally_backend(be, &s);
    window_tick(be->win, s.hist, s.requests, s.failures, NULL);
}

static void sample(struct sampler *s)
{
    struct lb *lb = s->lb;
    struct rt *rt = atomic_load(&lb->rt);
    int64_t now = clock_mono_ms();
    unsigned slot = (unsigned)(s->ticks % RT_HIST);
    bool pw = windows_follow(&s->pools, &s->npools, rt->npools, pool_name, rt) == 0;
    for (int i = 0; i < rt->npools; i++) {
        struct rt_pool *p = &rt->pools[i];
        for (int j = 0; j < p->n; j++) {
            struct rt_backend *be = p->be[j];
            be->req_hist[slot] = sampler_total(be);
            brk_tick(&be->brk, &p->cfg->breaker, now, be->pool, be->name);
            sample_backend(be);
        }
        struct pick_state st;
        pick_refresh(p, now, &st);
        pick_note_panic(p, st.panic);
        outlier_update(p, now, (uint32_t)rng_next(&s->rng));
        if (pw) {
            struct pool_sum ps;
            tally_pool(p->stats, &ps);
            window_tick(s->pools[i].w, ps.hist, ps.requests, ps.resp[RC_5XX], NULL);
        }
    }
    const struct cfg *cfg = rt->cfg;
    if (windows_follow(&s->listeners, &s->nlisteners, cfg->nlisteners, listener_name, rt) == 0)
        for (int i = 0; i < cfg->nlisteners; i++) {
            struct ls_sum ls;
            memset(&ls, 0, sizeof(ls));
            for (int w = 0; w < lb->nworkers; w++)
                worker_ls_add(&lb->workers[w], &cfg->listeners[i].addr, &ls);
            uint64_t answered = 0;
            for (int k = 0; k < RC_COUNT; k++)
                answered += ls.resp[k];
            window_tick(s->listeners[i].w, ls.hist, answered, ls.resp[RC_5XX], NULL);
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
    rng_seed_random(&s->rng);
    sample(s);
    ev_timer_init(&s->tm, on_tick, SAMPLER_INTERVAL_S, SAMPLER_INTERVAL_S);
    ev_timer_start(loop, &s->tm);
}

void sampler_stop(struct sampler *s, struct ev_loop *loop)
{
    ev_timer_stop(loop, &s->tm);
    for (int i = 0; i < s->npools; i++)
        free(s->pools[i].w);
    for (int i = 0; i < s->nlisteners; i++)
        free(s->listeners[i].w);
    free(s->pools);
    free(s->listeners);
    s->pools = s->listeners = NULL;
    s->npools = s->nlisteners = 0;
}
