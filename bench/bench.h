/* fl-bench's files: the floors (floors.c) and the faultline runs against
 * them (fl-bench.c). */
#ifndef FL_BENCH_H
#define FL_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "faultline/hist.h"

#define PS 4096

uint64_t now_ns(void);
double us(uint64_t ns);
uint64_t floor_first_touch(struct fl_hist *h, size_t npages);
double floor_place(size_t bytes);
uint64_t floor_copy(struct fl_hist *h, size_t npages);
uint64_t floor_roundtrip(struct fl_hist *h, size_t npages, int spin);
int run(const char *cmd);
/* TCP between two namespaces over veth: 4K round trips into rtt, then
 * bytes streamed, capped at rate (htb) if given; Mbit/s */
double net_floor(const char *rate, uint64_t bytes, struct fl_hist *rtt);
/* 1 GiB scan+reset with uffd-wp async + PAGEMAP_SCAN: all, 10%, none written (ms) */
void dirty_scan_cost(double out[3]);

#endif
