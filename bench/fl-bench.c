/* fl-bench: the floor this machine sets, and faultline measured against it,
 * in one run. Prints a table, writes JSON (and a PNG histogram if gnuplot
 * is installed). Needs root (network namespaces).
 *
 *   fl-bench [--out DIR] [--size 1G] [--rate-limit RATE] [--scale 1G,4G,8G | --no-scale]
 *
 * Scale: the same pure post-copy and pre-copy runs at each size, per GiB
 * (time, agents' CPU), the pull against the link, fault latency, and each
 * agent's peak private memory against the guest's RAM. */
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

#define PS 4096

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double us(uint64_t ns) { return (double)ns / 1e3; }

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
static uint64_t floor_first_touch(struct fl_hist *h, size_t npages)
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
static double floor_place(size_t bytes)
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
static uint64_t floor_copy(struct fl_hist *h, size_t npages)
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
static uint64_t floor_roundtrip(struct fl_hist *h, size_t npages, int spin)
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

static int run(const char *cmd)
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

/* ---- faultline runs ---- */

static json_object *demo(const char *self_dir, const char *args)
{
	char cmd[8192], line[1 << 16];
	json_object *last = NULL;

	snprintf(cmd, sizeof(cmd), "%s/../tools/faultline demo --json %s 2>/dev/null", self_dir, args);
	FILE *f = popen(cmd, "r");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		json_object *o = json_tokener_parse(line);
		if (o) {
			json_object_put(last);
			last = o;
		}
	}
	pclose(f);
	return last;
}

static double jd(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : -1;
}

/* TCP between two namespaces joined by a veth pair, as the demo uses: 4K
 * request/reply round trips into rtt, then `bytes` streamed; Mbit/s. A rate
 * caps the link the way the demo does (htb). */
static double net_floor(const char *rate, uint64_t bytes, struct fl_hist *rtt)
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
static void dirty_scan_cost(double out[3])
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

static double gib_of(const char *s)
{
	char *e;
	double v = strtod(s, &e);

	return v * (*e == 'G' || *e == 'g' ? 1 : *e == 'M' || *e == 'm' ? 1.0 / 1024 : 1.0 / (1 << 30));
}

/* One size of the scale table: its figures, as a JSON object. */
static json_object *scale_row(const char *self, const char *out, const char *size, bool precopy, double link)
{
	char args[512];
	double gib = gib_of(size);

	snprintf(args, sizeof(args), "%s--size %s --pattern uniform --vcpu-rate 2000 --warmup 1 "
		 "--id scale-%s-%s --status-dir %s", precopy ? "" : "--no-precopy ", size, size,
		 precopy ? "pre" : "post", out);
	json_object *r = demo(self, args), *v;
	if (!r)
		return NULL;
	if (!json_object_object_get_ex(r, "state", &v) || strcmp(json_object_get_string(v), "completed")) {
		printf("%5.0f GiB %-9s failed: %s\n", gib, precopy ? "pre-copy" : "post-copy",
		       json_object_object_get_ex(r, "error", &v) ? json_object_get_string(v) : "?");
		json_object_put(r);
		return NULL;
	}
	double pull = jd(r, "bulk_mbps");
	double anon = jd(r, "dest_peak_anon_kb") > jd(r, "source_peak_anon_kb") ? jd(r, "dest_peak_anon_kb")
										: jd(r, "source_peak_anon_kb");
	json_object *row = json_object_new_object();
	json_object_object_add(row, "size_gib", json_object_new_double(gib));
	json_object_object_add(row, "precopy", json_object_new_boolean(precopy));
	json_object_object_add(row, "total_ms_per_gib", json_object_new_double(jd(r, "total_ms") / gib));
	json_object_object_add(row, "pull_mbps", json_object_new_double(pull));
	json_object_object_add(row, "pull_ratio", json_object_new_double(link > 0 ? pull / link : 0));
	json_object_object_add(row, "fault_p50_us", json_object_new_double(jd(r, "fault_p50_us")));
	json_object_object_add(row, "fault_p99_us", json_object_new_double(jd(r, "fault_p99_us")));
	json_object_object_add(row, "fault_p999_us", json_object_new_double(jd(r, "fault_p999_us")));
	json_object_object_add(row, "peak_anon_pct", json_object_new_double(100.0 * anon / (gib * 1048576)));
	json_object_object_add(row, "source_cpu_s_per_gib", json_object_new_double(jd(r, "source_cpu_s") / gib));
	json_object_object_add(row, "dest_cpu_s_per_gib", json_object_new_double(jd(r, "dest_cpu_s") / gib));
	json_object_object_add(row, "corrupt_pages", json_object_new_double(jd(r, "corrupt_pages")));
	json_object_object_add(row, "checksum_match", json_object_new_boolean(
		json_object_object_get_ex(r, "checksum_match", &v) && json_object_get_boolean(v)));
	printf("%5.0f GiB %-9s %8.0f ms/GiB  pull %6.0f Mbit/s (%.2f of link)  fault p50 %6.1f p99 %7.1f "
	       "p99.9 %7.1f us  peak anon %.3f%%  CPU/GiB src %.2f s dst %.2f s  corrupt %.0f\n",
	       gib, precopy ? "pre-copy" : "post-copy", jd(r, "total_ms") / gib, pull, link > 0 ? pull / link : 0,
	       jd(r, "fault_p50_us"), jd(r, "fault_p99_us"), jd(r, "fault_p999_us"),
	       100.0 * anon / (gib * 1048576), jd(r, "source_cpu_s") / gib, jd(r, "dest_cpu_s") / gib,
	       jd(r, "corrupt_pages"));
	fflush(stdout);
	json_object_put(r);
	return row;
}

/* What authenticating and encrypting the links costs: the same pure
 * post-copy run with data encrypted (TLS through the relay), authenticated
 * only, and --insecure, as ratios to the last, in one run. */
static void tls_cost(const char *self, const char *out, const char *size, json_object *res)
{
	static const char *const name[] = { "encrypted", "authenticated", "insecure" };
	static const char *const flags[] = { "", "--no-encrypt-data", "--insecure" };
	char key[4096], args[8192];
	double pull[3] = { 0 }, p50[3] = { 0 };
	json_object *rows = json_object_new_object();

	snprintf(key, sizeof(key), "%s/bench.psk", out);
	FILE *f = fopen(key, "w");
	if (!f)
		return;
	fprintf(f, "bench:");
	for (int i = 0; i < 32; i++)
		fprintf(f, "%02x", (unsigned)(rand() & 0xff));
	fprintf(f, "\n");
	fclose(f);
	chmod(key, 0600);
	printf("\n== links: what TLS costs (pure post-copy, %s, uniform writer) ==\n", size);
	for (int i = 0; i < 3; i++) {
		snprintf(args, sizeof(args), "--no-precopy --size %s --pattern uniform --vcpu-rate 2000 %s%s %s", size,
			 i < 2 ? "--psk-file " : "", i < 2 ? key : "", flags[i]);
		json_object *r = demo(self, args);
		if (!r) {
			printf("%-14s run failed\n", name[i]);
			continue;
		}
		pull[i] = jd(r, "bulk_mbps");
		p50[i] = jd(r, "fault_p50_us");
		printf("%-14s pull %7.0f Mbit/s  fault p50 %6.1f us  p99 %7.1f us  CPU src/dst %.2f/%.2f s  corrupt %.0f\n",
		       name[i], pull[i], p50[i], jd(r, "fault_p99_us"), jd(r, "source_cpu_s"), jd(r, "dest_cpu_s"),
		       jd(r, "corrupt_pages"));
		json_object_object_add(rows, name[i], r);
	}
	if (pull[2] > 0 && p50[2] > 0) {
		printf("ratios to --insecure: pull encrypted %.2f, authenticated %.2f; fault p50 encrypted %.2f, "
		       "authenticated %.2f\n", pull[0] / pull[2], pull[1] / pull[2], p50[0] / p50[2], p50[1] / p50[2]);
		json_object_object_add(rows, "pull_ratio_encrypted", json_object_new_double(pull[0] / pull[2]));
		json_object_object_add(rows, "pull_ratio_authenticated", json_object_new_double(pull[1] / pull[2]));
		json_object_object_add(rows, "fault_p50_ratio_encrypted", json_object_new_double(p50[0] / p50[2]));
		json_object_object_add(rows, "fault_p50_ratio_authenticated", json_object_new_double(p50[1] / p50[2]));
	}
	json_object_object_add(res, "tls", rows);
	unlink(key);
}

static void print_run(const char *name, json_object *r)
{
	json_object *v;
	const char *reason = r && json_object_object_get_ex(r, "switch_reason", &v) ? json_object_get_string(v) : "?";

	printf("%-16s total %6.0f ms  switchover %6.1f ms  max stall %7.1f ms  pre-copy %6.0f pages in %2.0f rounds\n"
	       "%-16s post-copy %6.0f fetched + %6.0f zero; %6.0f current from pre-copy; switch: %s; corrupt %0.f, checksum %s\n",
	       name, jd(r, "total_ms"), jd(r, "switchover_ms"), jd(r, "max_stall_ms"), jd(r, "precopy_pages"),
	       jd(r, "precopy_rounds"), "", jd(r, "postcopy_pages"), jd(r, "zero_pages"), jd(r, "clean_pages"),
	       reason, jd(r, "corrupt_pages"),
	       r && json_object_object_get_ex(r, "checksum_match", &v) ? json_object_get_string(v) : "?");
}

int main(int argc, char **argv)
{
	const char *out = "bench/results", *size = "1G", *rate = NULL, *scale = "1G,4G,8G";
	char self[4096];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = argv[++i];
		else if (!strcmp(argv[i], "--rate-limit") && i + 1 < argc)
			rate = argv[++i];
		else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
			scale = argv[++i];
		else if (!strcmp(argv[i], "--no-scale"))
			scale = NULL;
		else {
			fprintf(stderr, "usage: fl-bench [--out DIR] [--size 1G] [--rate-limit 200mbit] "
				"[--scale 1G,4G,8G | --no-scale]\n");
			return 2;
		}
	}
	if (geteuid() != 0) {
		fprintf(stderr, "fl-bench: needs root (network namespaces)\n");
		return 1;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = 0;
	*strrchr(self, '/') = 0;
	mkdir(out, 0755);

	static struct fl_hist h_touch, h_copy, h_spin, h_poll, h_rtt;
	char *e;
	double sz = strtod(size, &e);
	sz *= *e == 'G' || *e == 'g' ? 1 << 30 : *e == 'M' || *e == 'm' ? 1 << 20 : 1;
	/* This machine is a VM whose host backs guest memory lazily: the first
	 * touch of a guest-physical page costs a host fault (~14 us), a reused
	 * one does not. Touch and free 4x the migration's size first so the
	 * floor and the migration both run on host-backed memory. */
	size_t warm = (size_t)sz * 4 < (8ull << 30) ? (size_t)sz * 4 : (8ull << 30);
	char *w = mmap(NULL, warm, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t tw = now_ns();
	if (w != MAP_FAILED) {
		for (size_t i = 0; i < warm; i += PS)
			w[i] = 1;
		munmap(w, warm);
	}
	printf("warm-up: touched %.0f MiB in %.1f s (%.1f us/page)\n", (double)warm / 1048576,
	       (double)(now_ns() - tw) / 1e9, (double)(now_ns() - tw) / 1e3 / (double)(warm / PS));
	printf("== floor on this machine ==\n");
	floor_first_touch(&h_touch, 20000);
	floor_copy(&h_copy, 20000);
	floor_roundtrip(&h_spin, 3000, 1);
	floor_roundtrip(&h_poll, 3000, 0);
	double place_mbs = floor_place((size_t)sz);
	printf("first-touch fault (tmpfs)      p50 %7.1f us  p99 %7.1f us\n",
	       us(fl_hist_quantile(&h_touch, .5)), us(fl_hist_quantile(&h_touch, .99)));
	printf("UFFDIO_COPY 4K                 p50 %7.1f us  p99 %7.1f us\n",
	       us(fl_hist_quantile(&h_copy, .5)), us(fl_hist_quantile(&h_copy, .99)));
	printf("UFFDIO_COPY 64-page runs, fresh memory (%s): %.0f MB/s = %.0f Mbit/s\n", size, place_mbs,
	       place_mbs * 8);
	printf("uffd round trip, spinning      p50 %7.1f us  p99 %7.1f us\n",
	       us(fl_hist_quantile(&h_spin, .5)), us(fl_hist_quantile(&h_spin, .99)));
	printf("uffd round trip, poll()-woken  p50 %7.1f us  p99 %7.1f us\n",
	       us(fl_hist_quantile(&h_poll, .5)), us(fl_hist_quantile(&h_poll, .99)));

	double mbps = net_floor(rate, 512ull << 20, &h_rtt);
	printf("TCP 4K round trip (veth)       p50 %7.1f us  p99 %7.1f us\n",
	       us(fl_hist_quantile(&h_rtt, .5)), us(fl_hist_quantile(&h_rtt, .99)));
	printf("TCP bandwidth (veth%s%s)   %9.0f Mbit/s\n", rate ? ", capped " : "", rate ? rate : "", mbps);

	/* faultline: a fault-heavy run (uniform access) and a bulk-dominated one. */
	printf("\n== faultline, pure post-copy (guest-sim, %s, two namespaces over veth) ==\n", size);
	char args[512];
	char cmd[20000];
	snprintf(args, sizeof(args), "--no-precopy --size %s --pattern uniform --vcpu-rate 2000 --id bench-main "
		 "--status-dir %s%s%s", size, out, rate ? " --rate-limit " : "", rate ? rate : "");
	json_object *fr = demo(self, args);
	if (!fr) {
		fprintf(stderr, "fl-bench: faultline demo run failed\n");
		return 1;
	}
	double floor_us = us(fl_hist_quantile(&h_touch, .5)) + us(fl_hist_quantile(&h_rtt, .5)) +
			  us(fl_hist_quantile(&h_copy, .5));
	double p50 = jd(fr, "fault_p50_us"), pull = jd(fr, "bulk_mbps");
	printf("state %s, corrupt_pages %.0f, checksum_match %s\n", json_object_get_string(
	       json_object_object_get(fr, "state")), jd(fr, "corrupt_pages"),
	       json_object_get_string(json_object_object_get(fr, "checksum_match")));
	printf("fault service (fetched)  p50 %7.1f us  p99 %7.1f us  p99.9 %7.1f us  (%0.f of %.0f faults)\n",
	       p50, jd(fr, "fault_p99_us"), jd(fr, "fault_p999_us"), jd(fr, "faults") - jd(fr, "fault_local"),
	       jd(fr, "faults"));
	printf("  on pages already here: %.0f, p50 %.1f us, p99 %.1f us\n", jd(fr, "fault_local"),
	       jd(fr, "fault_local_p50_us"), jd(fr, "fault_local_p99_us"));
	printf("agents: CPU source %.2f s, destination %.2f s; peak private memory %.1f / %.1f MiB\n",
	       jd(fr, "source_cpu_s"), jd(fr, "dest_cpu_s"), jd(fr, "source_peak_anon_kb") / 1024,
	       jd(fr, "dest_peak_anon_kb") / 1024);
	printf("  floor = first-touch + 4K RTT + COPY = %.1f us; p50/floor = %.2f (target <= 1.5), "
	       "p99/floor = %.2f (target <= 3), p99.9/floor = %.2f (target <= 10)\n",
	       floor_us, p50 / floor_us, jd(fr, "fault_p99_us") / floor_us, jd(fr, "fault_p999_us") / floor_us);
	double pfloor = mbps < place_mbs * 8 ? mbps : place_mbs * 8;
	printf("background pull %7.0f Mbit/s; pull/bandwidth = %.2f (target >= 0.80);\n"
	       "  pull/min(bandwidth, placement rate) = %.2f\n", pull, mbps > 0 ? pull / mbps : 0,
	       pfloor > 0 ? pull / pfloor : 0);
	printf("total %.0f ms, switchover %.1f ms, max guest stall %.1f ms\n", jd(fr, "total_ms"),
	       jd(fr, "switchover_ms"), jd(fr, "max_stall_ms"));

	/* Results: JSON and a histogram. */
	json_object *res = json_object_new_object();
	json_object_object_add(res, "first_touch_p50_us", json_object_new_double(us(fl_hist_quantile(&h_touch, .5))));
	json_object_object_add(res, "copy_4k_p50_us", json_object_new_double(us(fl_hist_quantile(&h_copy, .5))));
	json_object_object_add(res, "uffd_rt_spin_p50_us", json_object_new_double(us(fl_hist_quantile(&h_spin, .5))));
	json_object_object_add(res, "uffd_rt_poll_p50_us", json_object_new_double(us(fl_hist_quantile(&h_poll, .5))));
	json_object_object_add(res, "tcp_rtt_4k_p50_us", json_object_new_double(us(fl_hist_quantile(&h_rtt, .5))));
	json_object_object_add(res, "tcp_mbps", json_object_new_double(mbps));
	json_object_object_add(res, "placement_mbps", json_object_new_double(place_mbs * 8));
	json_object_object_add(res, "pull_ratio_placement", json_object_new_double(pfloor > 0 ? pull / pfloor : 0));
	json_object_object_add(res, "floor_us", json_object_new_double(floor_us));
	json_object_object_add(res, "fault_p50_ratio", json_object_new_double(p50 / floor_us));
	json_object_object_add(res, "pull_ratio", json_object_new_double(mbps > 0 ? pull / mbps : 0));
	json_object_object_add(res, "faultline", json_object_get(fr));
	snprintf(cmd, sizeof(cmd), "%s/../tools/faultline show bench-main --status-dir %s --plot %s/timeline.png "
		 ">/dev/null 2>&1 && echo \"timeline: %s/timeline.png\"", self, out, out, out);
	run(cmd);
	char path[8192];
	snprintf(path, sizeof(path), "%s/bench.json", out);
	json_object_to_file_ext(path, res, JSON_C_TO_STRING_PRETTY);
	printf("\nresults: %s\n", path);
	json_object *hist;
	if (json_object_object_get_ex(fr, "fault_hist_ns", &hist)) {
		snprintf(path, sizeof(path), "%s/fault-hist.dat", out);
		FILE *f = fopen(path, "w");
		for (size_t i = 0; f && i < json_object_array_length(hist); i++) {
			json_object *p = json_object_array_get_idx(hist, i);
			fprintf(f, "%f %lld\n", json_object_get_double(json_object_array_get_idx(p, 0)) / 1e3,
				(long long)json_object_get_int64(json_object_array_get_idx(p, 1)));
		}
		if (f)
			fclose(f);
		fflush(stdout);
		snprintf(cmd, sizeof(cmd),
			 "command -v gnuplot >/dev/null && gnuplot -e \"set terminal png size 900,500;"
			 " set output '%s/fault-hist.png'; set logscale x; set xlabel 'fault service (us)';"
			 " set ylabel 'faults'; set title 'faultline fault service latency';"
			 " plot '%s' using 1:2 with impulses lw 3 title 'faults'\" && echo \"histogram: %s/fault-hist.png\"",
			 out, path, out);
		run(cmd);
	}
	/* ---- pre-copy ---- */
	printf("\n== pre-copy and switchover ==\n");
	double sc[3];
	dirty_scan_cost(sc);
	printf("dirty scan+reset, 1 GiB, wp-async + PAGEMAP_SCAN: all pages written %.1f ms, 10%% %.1f ms, none %.1f ms\n",
	       sc[0], sc[1], sc[2]);
	int sd_ok = fl_dirty_soft_dirty_works();
	printf("dirty scan+reset, soft-dirty: %s\n", sd_ok ? "available (not timed here)"
	       : "not measurable: this kernel has no soft-dirty (CONFIG_MEM_SOFT_DIRTY unset); tested against a synthesized /proc");
	json_object *pa = demo(self, "--size 256M --vcpu-rate 2000");
	print_run("(a) converging", pa);
	static struct fl_hist h_cap;
	const char *cap = "100mbit";
	double cap_mbps = net_floor(cap, 16ull << 20, &h_cap);
	json_object *pb = demo(self, "--size 128M --rate-limit 100mbit --pattern uniform --vcpu-rate 5000");
	print_run("(b) non-conv.", pb);
	double ram_ms = cap_mbps > 0 ? 128.0 * 1048576 * 8 / 1e3 / cap_mbps : 0;
	double ratio_b = ram_ms > 0 ? jd(pb, "total_ms") / ram_ms : 0;
	printf("(b) link %s measured %.0f Mbit/s; RAM/bandwidth %.0f ms; total/(RAM/bandwidth) = %.2f (target <= 1.3)\n",
	       cap, cap_mbps, ram_ms, ratio_b);
	json_object_object_add(res, "dirty_scan_1g_all_ms", json_object_new_double(sc[0]));
	json_object_object_add(res, "dirty_scan_1g_10pct_ms", json_object_new_double(sc[1]));
	json_object_object_add(res, "dirty_scan_1g_none_ms", json_object_new_double(sc[2]));
	json_object_object_add(res, "precopy_converging", json_object_get(pa));
	json_object_object_add(res, "precopy_nonconverging", json_object_get(pb));
	json_object_object_add(res, "capped_link_mbps", json_object_new_double(cap_mbps));
	json_object_object_add(res, "nonconverging_total_ratio", json_object_new_double(ratio_b));
	tls_cost(self, out, size, res);
	/* ---- scale ---- */
	if (scale) {
		printf("\n== scale: the same runs at each size (uniform writer, 2 vCPUs at 2000 ops/s) ==\n");
		/* both hosts' RAM files of the largest size, host-backed first
		 * (this VM's memory is backed lazily by its host) */
		double maxg = 0;
		char tmp[256], *sv = NULL;
		snprintf(tmp, sizeof(tmp), "%s", scale);
		for (char *s = strtok_r(tmp, ",", &sv); s; s = strtok_r(NULL, ",", &sv))
			if (gib_of(s) > maxg)
				maxg = gib_of(s);
		size_t sw = (size_t)((2 * maxg + 1) * (1 << 30));
		long avp = sysconf(_SC_AVPHYS_PAGES);
		if (avp > 0 && sw > (size_t)avp * PS / 10 * 9)
			sw = (size_t)avp * PS / 10 * 9;
		char *wm = mmap(NULL, sw, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (wm != MAP_FAILED) {
			for (size_t i = 0; i < sw; i += PS)
				wm[i] = 1;
			munmap(wm, sw);
		}
		json_object *rows = json_object_new_array();
		char list[256], *save = NULL;
		snprintf(list, sizeof(list), "%s", scale);
		char path2[8192];
		snprintf(path, sizeof(path), "%s/scale-post.dat", out);
		snprintf(path2, sizeof(path2), "%s/scale-pre.dat", out);
		FILE *sd = fopen(path, "w"), *sd2 = fopen(path2, "w");
		for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save))
			for (int pre = 0; pre < 2; pre++) {
				json_object *row = scale_row(self, out, s, pre, mbps);
				if (!row) {
					printf("%s %s: run failed\n", s, pre ? "pre-copy" : "post-copy");
					continue;
				}
				if (pre ? sd2 != NULL : sd != NULL)
					fprintf(pre ? sd2 : sd, "%f %f %f\n", jd(row, "size_gib"),
						jd(row, "total_ms_per_gib"), jd(row, "pull_ratio"));
				json_object_array_add(rows, row);
			}
		if (sd)
			fclose(sd);
		if (sd2)
			fclose(sd2);
		json_object_object_add(res, "scale", rows);
		static char pcmd[40000];	/* three data paths and the output */
		snprintf(pcmd, sizeof(pcmd),
			 "command -v gnuplot >/dev/null && gnuplot -e \"set terminal png size 900,500;"
			 " set output '%s/scale.png'; set xlabel 'guest RAM (GiB)'; set ylabel 'ms per GiB';"
			 " set y2label 'pull / link'; set y2tics; set ytics nomirror; set yrange [0:*]; set y2range [0:1];"
			 " set title 'faultline: cost as the guest grows';"
			 " plot '%s' using 1:2 with linespoints title 'post-copy ms/GiB',"
			 " '%s' using 1:2 with linespoints title 'pre-copy ms/GiB',"
			 " '%s' using 1:3 axes x1y2 with linespoints title 'post-copy pull/link'\""
			 " && echo \"scale curve: %s/scale.png\"", out, path, path2, path, out);
		run(pcmd);
	}
	snprintf(path, sizeof(path), "%s/bench.json", out);
	json_object_to_file_ext(path, res, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	json_object_put(pa);
	json_object_put(pb);
	json_object_put(res);
	json_object_put(fr);
	return 0;
}
