/* Latency histogram: log-linear buckets (1/16 steps per power of two),
 * lock-free recording, percentiles within ~6%. */
#ifndef FAULTLINE_HIST_H
#define FAULTLINE_HIST_H

#include <stdint.h>

#define FL_HIST_SUB 16
#define FL_HIST_BUCKETS (64 * FL_HIST_SUB)

struct fl_hist {
	uint64_t count;
	uint64_t sum;
	uint64_t max;
	uint64_t b[FL_HIST_BUCKETS];
};

void fl_hist_reset(struct fl_hist *h);
void fl_hist_add(struct fl_hist *h, uint64_t v);
/* Value at quantile q in [0,1]; 0 when empty. */
uint64_t fl_hist_quantile(const struct fl_hist *h, double q);
void fl_hist_merge(struct fl_hist *dst, const struct fl_hist *src);
/* Representative value (bucket midpoint) and index helpers for dumps. */
uint64_t fl_hist_bucket_value(unsigned idx);

#endif
