/*
 * hdr.h - an HdrHistogram-style latency histogram: 3 significant decimal
 * digits from 1 us to 60 s.
 *
 * Values are integer microseconds. The layout is HdrHistogram's with a unit
 * of 1 us and 2048 sub-buckets per power of two: values below 2048 have a
 * counter each; from there on, bucket b (b >= 1) covers [1024 << b,
 * 2048 << b) with 1024 counters of width 1 << b, so a counter's width is at
 * most 1/1024 of its lowest value (under 0.1%). Values above HDR_MAX_US are
 * counted in the top counter and in .overflow; min, max, count and sum are
 * kept exactly, so max and mean are exact whatever the clamping.
 *
 * Recording is O(1) (a count-leading-zeros, two shifts, an increment). The
 * struct is plain memory of fixed size (about 140 KiB): one per worker, never
 * shared while recording; merge the workers' after they stopped.
 */
#ifndef LT_HDR_H
#define LT_HDR_H

#include <stdbool.h>
#include <stdint.h>

#define HDR_MAX_US     60000000ull /* 60 s: highest value tracked with precision */
#define HDR_SUB_BITS   11          /* 2048 sub-buckets: 3 significant digits */
#define HDR_SUB_COUNT  (1u << HDR_SUB_BITS)
#define HDR_HALF_COUNT (HDR_SUB_COUNT / 2)
#define HDR_BUCKETS    16 /* 2048 << 15 = 67,108,864 > HDR_MAX_US */
#define HDR_COUNTS     ((HDR_BUCKETS + 1) * HDR_HALF_COUNT)

struct hdr {
    uint64_t counts[HDR_COUNTS];
    uint64_t total;    /* values recorded */
    uint64_t overflow; /* values above HDR_MAX_US (counted at HDR_MAX_US) */
    uint64_t min;      /* exact; UINT64_MAX when empty */
    uint64_t max;      /* exact, not clamped; 0 when empty */
    uint64_t sum;      /* exact sum of the recorded values, for the mean */
};

void hdr_init(struct hdr *h);

/* Record one value in microseconds. */
void hdr_record(struct hdr *h, uint64_t us);

/* Add src's samples to dst. */
void hdr_merge(struct hdr *dst, const struct hdr *src);

/*
 * The q-quantile (0 < q <= 1) by nearest rank: with n samples, the value of
 * rank r = ceil(q * n), as the upper end of the counter that holds the r-th
 * smallest sample (HdrHistogram's value_at_percentile), clamped to the exact
 * [min, max]. So it is never below the exact order statistic and exceeds it
 * by less than 0.1%; hdr_quantile(h, 1.0) is the exact max. 0 when empty.
 */
uint64_t hdr_quantile(const struct hdr *h, double q);

/* Exact mean of the recorded values; 0 when empty. */
double hdr_mean(const struct hdr *h);

/* The rank ceil(q * n) for 0 < q <= 1, robust to q * n being a float a hair above an integer. */
uint64_t hdr_rank(double q, uint64_t n);

/* The counter a value falls into, and the range of values that counter holds. */
unsigned hdr_index(uint64_t us);
uint64_t hdr_lowest_equiv(unsigned index);
uint64_t hdr_highest_equiv(unsigned index);

#endif
