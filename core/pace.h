/* Inside the library: a token bucket that paces reads to a bandwidth cap,
 * shared by every thread that posts them. Reads are admitted while the
 * bucket is not in debt and paid for with the bytes that actually crossed
 * the link (zero pages cost nothing), so the cap holds in wire bytes. Not
 * installed. */
#ifndef FL_CORE_PACE_H
#define FL_CORE_PACE_H

#include <pthread.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

struct pace {
	pthread_mutex_t lock;
	double bytes_per_ns;		/* 0: no cap */
	double tokens, burst;		/* bytes; tokens < 0 is debt */
	uint64_t last_ns;
};

/* mbps 0 = unlimited. */
void pace_init(struct pace *p, double mbps);
/* 0 when a read may be posted now, else the ns until it may. */
uint64_t pace_wait_ns(struct pace *p);
/* A read completed: `bytes` crossed the link. */
void pace_spend(struct pace *p, uint64_t bytes);

#pragma GCC visibility pop

#endif
