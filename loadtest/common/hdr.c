/*
 * hdr.c - the HdrHistogram-style latency histogram (see hdr.h for the layout).
 */
#include "loadtest/common/hdr.h"

#include <math.h>
#include <string.h>

void hdr_init(struct hdr *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/* Bucket b is the power of two above the sub-bucket range; 0 for values below 2048. */
static unsigned hdr_bucket(uint64_t us)
{
    return 64u - (unsigned)__builtin_clzll(us | (HDR_SUB_COUNT - 1)) - HDR_SUB_BITS;
}

unsigned hdr_index(uint64_t us)
{
    unsigned b;

    if (us > HDR_MAX_US)
        us = HDR_MAX_US;
    b = hdr_bucket(us);
    return ((b + 1) << (HDR_SUB_BITS - 1)) + (unsigned)(us >> b) - HDR_HALF_COUNT;
}

uint64_t hdr_lowest_equiv(unsigned index)
{
    unsigned b, sub;

    if (index < HDR_SUB_COUNT)
        return index;
    b = (index >> (HDR_SUB_BITS - 1)) - 1;
    sub = (index & (HDR_HALF_COUNT - 1)) + HDR_HALF_COUNT;
    return (uint64_t)sub << b;
}

uint64_t hdr_highest_equiv(unsigned index)
{
    unsigned b = index < HDR_SUB_COUNT ? 0 : (index >> (HDR_SUB_BITS - 1)) - 1;

    return hdr_lowest_equiv(index) + (1ull << b) - 1;
}

void hdr_record(struct hdr *h, uint64_t us)
{
    if (us > HDR_MAX_US)
        h->overflow++;
    h->counts[hdr_index(us)]++;
    h->total++;
    h->sum += us;
    if (us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
}

void hdr_merge(struct hdr *dst, const struct hdr *src)
{
    unsigned i;

    if (src->total == 0)
        return;
    for (i = 0; i < HDR_COUNTS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hdr_rank(double q, uint64_t n)
{
    double x = q * (double)n;
    double r = ceil(x - x * 1e-14); /* 0.99 * 100 is 99.00000000000001 */

    if (r < 1)
        return 1;
    if (r > (double)n)
        return n;
    return (uint64_t)r;
}

uint64_t hdr_quantile(const struct hdr *h, double q)
{
    uint64_t rank, seen = 0, v;
    unsigned i;

    if (h->total == 0)
        return 0;
    rank = hdr_rank(q, h->total);
    if (rank == h->total)
        return h->max; /* exact, even above HDR_MAX_US */
    for (i = 0; i < HDR_COUNTS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            break;
    }
    if (i == HDR_COUNTS)
        return h->max; /* unreachable while counts and total agree */
    v = hdr_highest_equiv(i);
    if (v > h->max)
        v = h->max;
    if (v < h->min)
        v = h->min;
    return v;
}

double hdr_mean(const struct hdr *h)
{
    return h->total ? (double)h->sum / (double)h->total : 0.0;
}
