/* A token bucket for bandwidth caps (see pace.h). */
#define _GNU_SOURCE
#include "pace.h"
#include "util.h"

void pace_init(struct pace *p, double mbps)
{
	pthread_mutex_init(&p->lock, NULL);
	p->bytes_per_ns = mbps > 0 ? mbps * 1e6 / 8 / 1e9 : 0;
	p->burst = p->bytes_per_ns * 1e7;	/* 10 ms: the link stays busy between polls */
	p->tokens = p->burst;
	p->last_ns = fl_now_ns();
}

static void refill(struct pace *p)
{
	uint64_t now = fl_now_ns();

	p->tokens += (double)(now - p->last_ns) * p->bytes_per_ns;
	if (p->tokens > p->burst)
		p->tokens = p->burst;
	p->last_ns = now;
}

uint64_t pace_wait_ns(struct pace *p)
{
	uint64_t wait = 0;

	if (p->bytes_per_ns <= 0)
		return 0;
	pthread_mutex_lock(&p->lock);
	refill(p);
	if (p->tokens < 0)
		wait = (uint64_t)(-p->tokens / p->bytes_per_ns) + 1;
	pthread_mutex_unlock(&p->lock);
	return wait;
}

void pace_spend(struct pace *p, uint64_t bytes)
{
	if (p->bytes_per_ns <= 0)
		return;
	pthread_mutex_lock(&p->lock);
	refill(p);
	p->tokens -= (double)bytes;
	pthread_mutex_unlock(&p->lock);
}
