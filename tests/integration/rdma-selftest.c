/* The RDMA transport against itself on one host (soft-RoCE loops back to
 * its own address): a source server over a patterned buffer, a fault and a
 * bulk channel reading it back, every byte checked; then a source that goes
 * away mid-run must surface as a clear channel error. Prints READ latency
 * and bulk throughput (meaningful only as ratios under TCG).
 *
 * usage: rdma-selftest IP:PORT      exit 0 ok, 1 failure, 77 no RDMA here */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "faultline/rdma.h"

#define PS 4096
#define PAGES 2048	/* 8 MiB */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int wait_n(const struct fl_transport_ops *ops, struct fl_tconn *c, struct fl_tcompl *out, int n)
{
	int got = 0;

	for (int spins = 0; got < n && spins < 2000; spins++) {
		int r = ops->poll(c, out + got, n - got, 10);
		if (r < 0)
			return r;
		got += r;
	}
	return got;
}

int main(int argc, char **argv)
{
	const struct fl_transport_ops *ops = fl_transport_rdma_ops;
	struct fl_rdma_server *srv = NULL;
	struct fl_tconn *fc = NULL, *bc = NULL;
	struct fl_tcompl comp[64];
	struct fl_hello h = { .version = FL_PROTO_VERSION, .session = 0x5eed, .nregions = 1 };
	struct fl_transport_opts to;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: rdma-selftest IP:PORT\n");
		return 2;
	}
	if (!ops) {
		printf("SKIP: built without rdma-core\n");
		return 77;
	}
	uint64_t *src = mmap(NULL, PAGES * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *dst = mmap(NULL, 64 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (uint64_t i = 0; i < PAGES * PS / 8; i++)
		src[i] = i * 0x9E3779B97F4A7C15ull;
	snprintf(h.regions[0].name, sizeof(h.regions[0].name), "ram0");
	h.regions[0].length = PAGES * PS;
	h.regions[0].page_size = PS;
	void *base[1] = { src };
	rc = fl_rdma_server_create(argv[1], &h, base, &srv);
	if (rc) {
		printf("%s: %s\n", rc == -ENODEV ? "SKIP" : "FAIL", fl_error_text(fl_transport_error()));
		return rc == -ENODEV ? 77 : 1;
	}
	printf("server: region at 0x%llx rkey 0x%x\n", (unsigned long long)h.regions[0].remote_addr,
	       h.regions[0].rkey);
	fl_transport_opts_default(&to);
	rc = ops->connect(argv[1], &to, 0x5eed, FL_CHAN_FAULT, 0, &h, &fc);
	if (!rc)
		rc = ops->connect(argv[1], &to, 0x5eed, FL_CHAN_BULK, 0, &h, &bc);
	if (rc) {
		printf("FAIL: connect: %s\n", fl_error_text(fl_transport_error()));
		return 1;
	}
	/* a wrong session is refused */
	struct fl_tconn *bad = NULL;
	if (ops->connect(argv[1], &to, 0xbad, FL_CHAN_BULK, 1, &h, &bad) == 0) {
		printf("FAIL: a connection with the wrong session was accepted\n");
		return 1;
	}
	printf("wrong session refused: %s\n", fl_error_text(fl_transport_error()));
	if (ops->reg(fc, dst, 64 * PS) || ops->reg(bc, dst, 64 * PS)) {
		printf("FAIL: reg: %s\n", fl_error_text(fl_transport_error()));
		return 1;
	}

	/* fault channel: single pages, latency */
	uint64_t lat[500];
	for (int i = 0; i < 500; i++) {
		uint64_t page = (uint64_t)(i * 7919) % PAGES, t = now_ns();
		rc = ops->post_read(fc, (uint64_t)i, 0, page, 1, dst);
		if (rc || wait_n(ops, fc, comp, 1) != 1 || comp[0].wr_id != (uint64_t)i) {
			printf("FAIL: fault read %d: %s\n", i, rc ? fl_error_text(fl_transport_error()) : "no completion");
			return 1;
		}
		lat[i] = now_ns() - t;
		if (memcmp(dst, (char *)src + page * PS, PS)) {
			printf("FAIL: fault read of page %llu returned wrong data\n", (unsigned long long)page);
			return 1;
		}
	}
	qsort(lat, 500, sizeof(lat[0]), cmp_u64);
	printf("RESULT rdma_fault_read_p50_us=%.1f p99_us=%.1f\n", lat[250] / 1e3, lat[495] / 1e3);

	/* bulk: 8 reads of 8 pages in flight, mostly unsignalled; odd batch
	 * sizes leave an unsignalled tail that poll must flush */
	uint64_t t0 = now_ns(), bytes = 0;
	for (int round = 0; round < 64; round++) {
		int batch = 1 + round % 8;
		for (int k = 0; k < batch; k++) {
			uint64_t page = (uint64_t)((round * 8 + k) * 8) % PAGES;
			rc = ops->post_read(bc, (uint64_t)k, 0, page, 8, dst + (size_t)k * 8 * PS);
			if (rc) {
				printf("FAIL: bulk post: %s\n", fl_error_text(fl_transport_error()));
				return 1;
			}
		}
		int got = wait_n(ops, bc, comp, batch);
		if (got != batch) {
			printf("FAIL: bulk round %d: %d of %d completions (%s)\n", round, got, batch,
			       got < 0 ? fl_error_text(fl_transport_error()) : "lost");
			return 1;
		}
		for (int k = 0; k < batch; k++) {
			uint64_t page = (uint64_t)((round * 8 + k) * 8) % PAGES;
			if (memcmp(dst + (size_t)k * 8 * PS, (char *)src + page * PS, 8 * PS)) {
				printf("FAIL: bulk data mismatch at page %llu\n", (unsigned long long)page);
				return 1;
			}
			bytes += 8 * PS;
		}
	}
	double secs = (now_ns() - t0) / 1e9;
	printf("RESULT rdma_bulk_mbps=%.0f\n", bytes * 8 / 1e6 / secs);

	/* out of bounds is refused locally */
	if (ops->post_read(bc, 0, 0, PAGES - 1, 2, dst) != -EINVAL) {
		printf("FAIL: a read past the region was posted\n");
		return 1;
	}
	/* the source goes away: the channel reports it, clearly */
	fl_rdma_server_destroy(srv);
	rc = 0;
	for (int i = 0; i < 300 && rc >= 0; i++) {
		rc = ops->post_read(fc, 1, 0, 0, 1, dst);
		if (rc >= 0)
			rc = ops->poll(fc, comp, 1, 10);
	}
	if (rc >= 0) {
		printf("FAIL: the source's departure went unnoticed\n");
		return 1;
	}
	printf("source gone: %s\n", fl_error_text(fl_transport_error()));
	ops->close(fc);
	ops->close(bc);
	printf("PASS\n");
	return 0;
}
