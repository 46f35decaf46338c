/* Stands in for a vhost-user/DPDK backend on the destination: a second
 * process mapping the guest's RAM files (shared, read-write, with the
 * faultline shim preloaded, role dest). It reads every page once, in a
 * scattered order, from the moment it starts (so its reads wait for the
 * switchover and race the background pull), keeping a private copy.
 * When GO exists (the test creates it after the migration), it compares
 * its copy with the source's RAM files, frozen since the source stopped:
 * every page the test guest's workload owns (self-describing: index,
 * version, pattern) must read as the source's version or a newer valid
 * one, never stale, zero or torn (a copy that raced the guest rewriting
 * the page is re-read: the page must then hold that version or a later one).
 *
 * usage: backend-standin GO DST=SRC...   (exit 0 clean, 1 bad pages, 2 usage/IO) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../vm/gw-page.h"

#define PS GW_PS

struct file {
	const char *dst, *src;
	char *map, *copy;
	uint64_t *at;	/* when each page was read */
	size_t len;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int gw_valid(const uint64_t *p)
{
	return p[0] < GW_PAGES && p[1] != 0 && p[1] <= UINT32_MAX && gw_is(p, p[0], p[1]);
}

int main(int argc, char **argv)
{
	struct file f[8];
	int nf = 0;

	if (argc < 3 || argc - 2 > 8) {
		fprintf(stderr, "usage: backend-standin GO DST=SRC...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "backend-standin: %s: want DST=SRC\n", argv[i]);
			return 2;
		}
		*eq = 0;
		struct file *x = &f[nf++];
		x->dst = argv[i];
		x->src = eq + 1;
		int fd = open(x->dst, O_RDWR);
		struct stat st;
		if (fd < 0 || fstat(fd, &st)) {
			fprintf(stderr, "backend-standin: %s: %s\n", x->dst, strerror(errno));
			return 2;
		}
		x->len = (size_t)st.st_size;
		x->map = mmap(NULL, x->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		x->copy = malloc(x->len);
		x->at = calloc(x->len / PS, sizeof(*x->at));
		close(fd);
		if (x->map == MAP_FAILED || !x->copy || !x->at) {
			fprintf(stderr, "backend-standin: mapping %s: %s\n", x->dst, strerror(errno));
			return 2;
		}
	}
	printf("MAPPED files=%d\n", nf);
	fflush(stdout);

	/* Every page once, scattered: a stride coprime with the page count. */
	uint64_t t0 = 0, worst = 0, slow = 0, n = 0;
	for (int i = 0; i < nf; i++) {
		uint64_t pages = f[i].len / PS, stride = 40503;
		while (pages % stride == 0 || stride % 2 == 0)
			stride += 2;
		for (uint64_t k = 0, p = 0; k < pages; k++, p = (p + stride) % pages) {
			uint64_t t = now_ns();
			memcpy(f[i].copy + p * PS, f[i].map + p * PS, PS);
			uint64_t dt = now_ns() - t;
			f[i].at[p] = t;
			if (!t0)
				t0 = now_ns();	/* the first read returns at the switchover */
			if (dt > worst && n)
				worst = dt;
			slow += dt > 1000000;
			n++;
		}
	}
	printf("READ pages=%llu ms=%llu worst_us=%llu over_1ms=%llu\n", (unsigned long long)n,
	       (unsigned long long)((now_ns() - t0) / 1000000), (unsigned long long)(worst / 1000),
	       (unsigned long long)slow);
	fflush(stdout);

	for (int i = 0; access(argv[1], F_OK); i++) {
		if (i > 2400) {
			fprintf(stderr, "backend-standin: %s never appeared\n", argv[1]);
			return 2;
		}
		usleep(50000);
	}
	uint64_t same = 0, newer = 0, raced = 0, gw = 0, bad = 0, otherdiff = 0, moved = 0;
	/* Each workload page's version at the switchover, wherever it was:
	 * the guest kernel may move a page to another frame after the switch
	 * (compaction, NUMA balancing), and that frame then holds a version
	 * newer than any the source had. A copy of the source's content in
	 * the wrong place would not be newer. */
	uint32_t *srcver = calloc(GW_PAGES, sizeof(*srcver));
	for (int i = 0; srcver && i < nf; i++) {
		int fd = open(f[i].src, O_RDONLY);
		uint64_t pg[PS / 8];
		for (uint64_t p = 0; fd >= 0 && p < f[i].len / PS; p++)
			if (pread(fd, pg, PS, (off_t)(p * PS)) == PS && gw_valid(pg) && pg[1] > srcver[pg[0]])
				srcver[pg[0]] = (uint32_t)pg[1];
		if (fd >= 0)
			close(fd);
	}
	for (int i = 0; i < nf; i++) {
		int fd = open(f[i].src, O_RDONLY);
		if (fd < 0) {
			fprintf(stderr, "backend-standin: %s: %s\n", f[i].src, strerror(errno));
			return 2;
		}
		uint64_t src[PS / 8];
		for (uint64_t p = 0; p < f[i].len / PS; p++) {
			if (pread(fd, src, PS, (off_t)(p * PS)) != PS) {
				fprintf(stderr, "backend-standin: short read of %s\n", f[i].src);
				return 2;
			}
			const uint64_t *d = (const uint64_t *)(f[i].copy + p * PS);
			int is_gw = gw_valid(src);
			gw += is_gw;
			if (!memcmp(d, src, PS)) {
				same++;
				continue;
			}
			if (!is_gw) {
				otherdiff++;	/* guest kernel pages legitimately change */
				continue;
			}
			if (gw_valid(d) && d[0] == src[0] && d[1] > src[1]) {
				newer++;
				continue;
			}
			/* A newer header over an older body: our copy raced the
			 * guest rewriting the page. Fine if the page now holds
			 * that version or a later one, whole. */
			const uint64_t *live = (const uint64_t *)(f[i].map + p * PS);
			uint64_t again[PS / 8];
			memcpy(again, live, PS);
			if (d[0] == src[0] && d[1] > src[1] && gw_valid(again) && again[0] == d[0] &&
			    again[1] >= d[1]) {
				raced++;
				continue;
			}
			if (srcver && gw_valid(d) && d[0] != src[0] && d[1] > srcver[d[0]]) {
				moved++;	/* written here after the switch, in a frame the guest moved it to */
				continue;
			}
			/* What the page holds now tells a transient wrong read (the
			 * guest's page is right there now) from a frame the guest
			 * freed and reused since. */
			if (bad++ < 5)
				printf("BAD %s page %llu: source holds %llu/v%llu, read %llu/v%llu%s %lld ms after "
				       "the first read; holds %llu/v%llu%s now\n", f[i].dst,
				       (unsigned long long)p, (unsigned long long)src[0],
				       (unsigned long long)src[1], (unsigned long long)d[0],
				       (unsigned long long)d[1], gw_valid(d) ? "" : " (not a valid page)",
				       (long long)((int64_t)(f[i].at[p] - t0) / 1000000),
				       (unsigned long long)again[0], (unsigned long long)again[1],
				       gw_valid(again) ? "" : " (not a valid page)");
		}
		close(fd);
	}
	printf("STANDIN pages=%llu same=%llu guestwork=%llu newer=%llu raced=%llu moved=%llu otherdiff=%llu bad=%llu\n",
	       (unsigned long long)n, (unsigned long long)same, (unsigned long long)gw,
	       (unsigned long long)newer, (unsigned long long)raced, (unsigned long long)moved,
	       (unsigned long long)otherdiff, (unsigned long long)bad);
	return bad || !gw ? 1 : 0;
}
