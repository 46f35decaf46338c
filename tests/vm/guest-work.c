/* The test guest's workload (PID 1 in a busybox initramfs): pages of its own
 * memory that name their index and version, rewritten at random; every read
 * is checked, and every two seconds all pages are. Heartbeats on the serial
 * console carry the longest stall it saw and the corruption it found, so a
 * migration's effect is visible from inside the guest. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw-page.h"

#define PS GW_PS
#define NPAGES GW_PAGES

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fill(uint64_t *p, uint64_t idx, uint32_t v)
{
	gw_fill(p, idx, v);
}

static int ok(const uint64_t *p, uint64_t idx, uint32_t v)
{
	return gw_is(p, idx, v);
}

/* How often the kernel moved pages (NUMA balancing, compaction) or merged
 * them into huge pages: a frame it left is reused, so it no longer holds
 * what the source's did at the switch. */
static void vmstat(void)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char k[64];
	unsigned long long v, mig = 0, thp = 0;

	while (f && fscanf(f, "%63s %llu", k, &v) == 2) {
		if (!strcmp(k, "pgmigrate_success"))
			mig = v;
		else if (!strcmp(k, "thp_collapse_alloc"))
			thp = v;
	}
	if (f)
		fclose(f);
	printf("VMSTAT pgmigrate_success=%llu thp_collapse_alloc=%llu\n", mig, thp);
}

int main(int argc, char **argv)
{
	char *ram = aligned_alloc(PS, (size_t)NPAGES * PS);
	uint32_t *ver = calloc(NPAGES, sizeof(*ver));
	uint64_t rng = 88172645463325252ull, ops = 0, corrupt = 0, seq = 0, maxstall = 0;

	/* "hot" on the kernel command line (passed on to init): rewrite pages
	 * as fast as the vCPU can, faster than a capped link carries them. */
	int hot = 0, idle = 0;	/* "idle": a few pages a second, so pre-copy could converge */
	for (int i = 1; i < argc; i++) {
		hot |= !strcmp(argv[i], "hot");
		idle |= !strcmp(argv[i], "idle");
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (uint64_t i = 0; i < NPAGES; i++) {
		ver[i] = 1;
		fill((uint64_t *)(ram + i * PS), i, 1);
	}
	printf("GUEST READY pages=%d%s\n", NPAGES, hot ? " hot" : idle ? " idle" : "");
	uint64_t last = now_ns(), next_hb = last + 100000000ull, next_verify = last + 2000000000ull;
	for (;;) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		uint64_t i = rng % NPAGES;
		uint64_t *p = (uint64_t *)(ram + i * PS);
		if (!ok(p, i, ver[i])) {
			corrupt++;
			printf("CORRUPT page=%llu holds=%llu/%llu want=%u\n", (unsigned long long)i,
			       (unsigned long long)p[0], (unsigned long long)p[1], ver[i]);
		}
		fill(p, i, ++ver[i]);
		ops++;
		uint64_t t = now_ns();
		if (t - last > maxstall)
			maxstall = t - last;
		last = t;
		if (t >= next_hb) {
			printf("HB seq=%llu ops=%llu maxstall_ms=%llu corrupt=%llu\n", (unsigned long long)++seq,
			       (unsigned long long)ops, (unsigned long long)(maxstall / 1000000),
			       (unsigned long long)corrupt);
			next_hb = t + 100000000ull;
		}
		if (t >= next_verify) {
			uint64_t bad = 0;
			for (uint64_t k = 0; k < NPAGES; k++)
				bad += !ok((uint64_t *)(ram + k * PS), k, ver[k]);
			corrupt += bad;
			printf("VERIFY pages=%d corrupt=%llu\n", NPAGES, (unsigned long long)bad);
			vmstat();
			next_verify = now_ns() + 2000000000ull;
			last = now_ns();
		}
		if (!hot)
			usleep(idle ? 20000 : 200);
	}
}
