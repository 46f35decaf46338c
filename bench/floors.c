/* fl-bench's floors: what this machine costs before faultline does
 * anything (first touch, UFFDIO_COPY, the uffd round trip, TCP between two
 * namespaces, the dirty scan), each measured the same way in every run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faultline/bitmap.h"
#include "faultline/dirty.h"
#include "faultline/hist.h"
#include "faultline/transport.h"
#include "faultline/uffd.h"

#include "bench/bench.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double us(uint64_t ns) { return (double)ns / 1e3; }

static void *map_tmpfs(size_t len, int *fdp)
{
	char path[] = "/dev/shm/fl-bench-XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0)
		return MAP_FAILED;
	unlink(path);
	if (ftruncate(fd, (off_t)len) < 0) {
		close(fd);
		return MAP_FAILED;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fdp)
		*fdp = fd;
	else
		close(fd);
	return p;
}

/* First touch of a tmpfs page: allocation + mapping, no userfaultfd. */
uint64_t floor_first_touch(struct fl_hist *h, size_t npages)
{
	char *p = map_tmpfs(npages * PS, NULL);

	if (p == MAP_FAILED)
		return 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t t = now_ns();
		p[i * PS] = 1;
		fl_hist_add(h, now_ns() - t);
	}
	munmap(p, npages * PS);
	return fl_hist_quantile(h, 0.5);
}

/* Placement rate: UFFDIO_COPY in 64-page runs (as the bulk puller does)
 * into a fresh registered tmpfs mapping of the migration's size. On this VM
 * a never-touched guest-physical page costs a host fault, so this, not the
 * link, can bound the pull; returns MB/s. */
double floor_place(size_t bytes)
{
	size_t run = 64 * PS, n = bytes / run;
	char *p = map_tmpfs(n * run, NULL);
	char *src = malloc(run);
	int uffd = fl_uffd_open(0, 0, NULL);

	memset(src, 0xab, run);
	if (p == MAP_FAILED || uffd < 0 || fl_uffd_register(uffd, p, n * run, FL_UFFD_MISSING, NULL))
		return 0;
	uint64_t t = now_ns();
	for (size_t i = 0; i < n; i++)
		fl_uffd_copy(uffd, p + i * run, src, run, false);
	double secs = (double)(now_ns() - t) / 1e9;
	close(uffd);
	munmap(p, n * run);
	free(src);
	return (double)(n * run) / 1e6 / secs;
}

/* UFFDIO_COPY of one 4K page into a registered tmpfs mapping, no waiter. */
uint64_t floor_copy(struct fl_hist *h, size_t npages)
{
	char *p = map_tmpfs(npages * PS, NULL);
	char src[PS];
	int uffd = fl_uffd_open(0, 0, NULL);

	memset(src, 0xab, sizeof(src));
	if (p == MAP_FAILED || uffd < 0 ||
	    fl_uffd_register(uffd, p, npages * PS, FL_UFFD_MISSING, NULL))
		return 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t t = now_ns();
		fl_uffd_copy(uffd, p + i * PS, src, PS, true);
		fl_hist_add(h, now_ns() - t);
	}
	close(uffd);
	munmap(p, npages * PS);
	return fl_hist_quantile(h, 0.5);
}

struct rt {
	int uffd;
	char *base;
	size_t npages;
	int spin;
	volatile int stop;
};

static void *rt_handler(void *arg)
{
	struct rt *r = arg;
	char src[PS];
	struct fl_uffd_event ev[16];

	memset(src, 0xcd, sizeof(src));
	while (!r->stop) {
		struct pollfd p = { .fd = r->uffd, .events = POLLIN };
		if (fl_uffd_poll_adaptive(&p, 1, r->spin ? 1000000 : 0, 50) <= 0)
			continue;
		int n = fl_uffd_read_events(r->uffd, ev, 16);
		for (int i = 0; i < n; i++)
			fl_uffd_copy(r->uffd, (void *)(uintptr_t)ev[i].addr, src, PS, true);
	}
	return NULL;
}

/* Fault -> handler -> UFFDIO_COPY -> faulting thread resumes. */
uint64_t floor_roundtrip(struct fl_hist *h, size_t npages, int spin)
{
	struct rt r = { .npages = npages, .spin = spin };
	pthread_t th;

	r.base = map_tmpfs(npages * PS, NULL);
	r.uffd = fl_uffd_open(0, 0, NULL);
	if (r.base == MAP_FAILED || r.uffd < 0 ||
	    fl_uffd_register(r.uffd, r.base, npages * PS, FL_UFFD_MISSING, NULL))
		return 0;
	pthread_create(&th, NULL, rt_handler, &r);
	usleep(10000);
	volatile char sink = 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t t = now_ns();
		sink += r.base[i * PS];
		fl_hist_add(h, now_ns() - t);
		usleep(200);	/* let a poll()-woken handler go back to sleep */
	}
	(void)sink;
	r.stop = 1;
	pthread_join(th, NULL);
	close(r.uffd);
	munmap(r.base, npages * PS);
	return fl_hist_quantile(h, 0.5);
}

/* ---- network floor between two namespaces ---- */

int run(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int enter_ns(const char *ns)
{
	char path[256];

	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		return -1;
	close(fd);
	return 0;
}

/* Server in the source namespace: for each 24-byte request, reply 4K;
 * for a "B" request, stream `len` bytes. */
static pid_t tcp_server(const char *ns, const char *addr)
{
	pid_t p = fork();

	if (p)
		return p;
	if (enter_ns(ns))
		_exit(1);
	int l = fl_transport_tcp_listen(addr, 4);
	if (l < 0)
		_exit(1);
	static char buf[1 << 20];
	for (;;) {
		int c = fl_transport_tcp_accept(l, 10000);
		if (c < 0)
			_exit(0);
		char req[24];
		for (;;) {
			ssize_t n = recv(c, req, sizeof(req), MSG_WAITALL);
			if (n != sizeof(req))
				break;
			if (req[0] == 'B') {
				uint64_t len;
				memcpy(&len, req + 8, 8);
				for (uint64_t s = 0; s < len;) {
					ssize_t w = write(c, buf, len - s < sizeof(buf) ? len - s : sizeof(buf));
					if (w <= 0)
						break;
					s += (uint64_t)w;
				}
			} else if (write(c, buf, PS) != PS)
				break;
		}
		close(c);
	}
}

static int tcp_client(const char *addr, struct fl_hist *rtt, uint64_t len, double *mbps)
{
	int c = fl_transport_tcp_connect(addr, 5000);
	char req[24] = { 0 }, buf[1 << 16];

	if (c < 0)
		return c;
	for (int i = 0; i < 2000; i++) {
		uint64_t t = now_ns();
		if (write(c, req, sizeof(req)) != sizeof(req) || recv(c, buf, PS, MSG_WAITALL) != PS)
			return -EIO;
		fl_hist_add(rtt, now_ns() - t);
	}
	req[0] = 'B';
	memcpy(req + 8, &len, 8);
	uint64_t t = now_ns();
	if (write(c, req, sizeof(req)) != sizeof(req))
		return -EIO;
	for (uint64_t got = 0; got < len;) {
		ssize_t n = read(c, buf, sizeof(buf));
		if (n <= 0)
			return -EIO;
		got += (uint64_t)n;
	}
	*mbps = (double)len * 8 / 1e6 / ((double)(now_ns() - t) / 1e9);
	close(c);
	return 0;
}

/* TCP between two namespaces joined by a veth pair, as the demo uses: 4K
 * request/reply round trips into rtt, then `bytes` streamed; Mbit/s. A rate
 * caps the link the way the demo does (htb). */
double net_floor(const char *rate, uint64_t bytes, struct fl_hist *rtt)
{
	const char *A = "fl-bench-a", *B = "fl-bench-b";
	char cmd[4096];
	double mbps = 0;

	snprintf(cmd, sizeof(cmd),
		 "ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null; ip netns add %s && ip netns add %s &&"
		 " ip link add flba type veth peer name flbb && ip link set flba netns %s &&"
		 " ip link set flbb netns %s && ip -n %s addr add 10.78.0.1/24 dev flba &&"
		 " ip -n %s addr add 10.78.0.2/24 dev flbb && ip -n %s link set flba up &&"
		 " ip -n %s link set flbb up && ip -n %s link set lo up && ip -n %s link set lo up",
		 A, B, A, B, A, B, A, B, A, B, A, B);
	if (run(cmd) == 0) {
		if (rate) {
			snprintf(cmd, sizeof(cmd),
				 "tc -n %s qdisc add dev flba root handle 1: htb default 20 &&"
				 " tc -n %s class add dev flba parent 1: classid 1:20 htb rate %s quantum 60000", A, A, rate);
			run(cmd);
		}
		pid_t srv = tcp_server(A, "10.78.0.1:7100");
		pid_t cli = -1;
		int pfd[2];
		if (pipe(pfd) == 0 && (cli = fork()) == 0) {
			double m = 0;
			if (enter_ns(B) || tcp_client("10.78.0.1:7100", rtt, bytes, &m))
				_exit(1);
			(void)!write(pfd[1], rtt, sizeof(*rtt));
			(void)!write(pfd[1], &m, sizeof(m));
			_exit(0);
		}
		close(pfd[1]);
		if (read(pfd[0], rtt, sizeof(*rtt)) != sizeof(*rtt) ||
		    read(pfd[0], &mbps, sizeof(mbps)) != sizeof(mbps))
			fprintf(stderr, "fl-bench: TCP floor measurement failed\n");
		close(pfd[0]);
		waitpid(cli, NULL, 0);
		kill(srv, SIGKILL);
		waitpid(srv, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "ip netns del %s; ip netns del %s", A, B);
	run(cmd);
	return mbps;
}

/* One scan+reset of 1 GiB with the WP_ASYNC backend, with all pages, 10% and
 * no pages written since the last scan; ms. */
void dirty_scan_cost(double out[3])
{
	size_t len = 1ull << 30, np = len / PS;
	int f;
	char *p = map_tmpfs(len, &f);
	struct fl_uffd_caps caps;
	struct fl_dirty *t;
	struct fl_bitmap bm;

	out[0] = out[1] = out[2] = -1;
	fl_uffd_probe(&caps);
	int uffd = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, NULL);
	if (p == MAP_FAILED || uffd < 0)
		return;
	for (size_t i = 0; i < np; i++)
		p[i * PS] = 1;
	struct fl_dirty_range r = { (uint64_t)(uintptr_t)p, len, PS, 0 };
	struct fl_dirty_opts o = { .backend = FL_DIRTY_WP_ASYNC };
	if (fl_bitmap_create(&bm, np) || fl_dirty_create(&t, uffd, getpid(), &r, 1, &o))
		return;
	for (int k = 0; k < 3; k++) {
		size_t step = k == 0 ? 1 : k == 1 ? 10 : 0;
		for (size_t i = 0; step && i < np; i += step)
			p[i * PS] = 2;
		fl_bitmap_zero(&bm);
		uint64_t t0 = now_ns();
		fl_dirty_scan(t, &bm);
		out[k] = (double)(now_ns() - t0) / 1e6;
	}
	fl_dirty_destroy(t);
	fl_bitmap_destroy(&bm);
	close(uffd);
	munmap(p, len);
	close(f);
}
