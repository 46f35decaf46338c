/* guest-sim: a workload that behaves like a VM for migration purposes.
 * RAM is a file mapped MAP_SHARED (through the faultline shim, as QEMU's
 * memory-backend-file is); vCPU threads read, verify and rewrite pages;
 * every page says which page and which version it is, so a stale, torn or
 * zero page is caught. The "device state" (version table, vCPU clocks)
 * moves over its own TCP link, the way QEMU moves device state. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmctl.h"

#define PS 4096
#define MAX_VCPU 16

static struct {
	const char *ram, *ctl, *incoming;
	uint64_t size, npages;
	int vcpus;
	double rate;		/* ops/s per vCPU, 0 = unthrottled */
	int hot_pct;		/* 0: uniform; else % of pages that are hot */
	int stride;		/* >0: each vCPU sweeps every stride-th page in turn */
	int subset_pct;		/* >0: only a fixed random subset of this % of pages */
	int write;		/* 1: read+verify+write; 0: read+verify */
	int fill_pct;
	uint64_t seed;
} cfg = { .size = 64ull << 20, .vcpus = 2, .rate = 5000, .write = 1, .fill_pct = 75, .seed = 1 };

static char *ram;
static uint32_t *ver;		/* expected version of each page; 0 = never written */
static uint32_t *ver0;		/* versions at switchover (destination only) */
static pthread_mutex_t plock[256];
static volatile int paused_req, quit_req, frozen;
static int npaused;
static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pause_cond = PTHREAD_COND_INITIALIZER;
static const char *state = "running";

struct vcpu {
	pthread_t th;
	int idx;
	uint64_t ops, corrupt, last_ns, max_gap_ns, max_gap_at, switch_gap_ns;
	int resumed;
	int tid;		/* for the agent's per-vCPU blocktime */
	uint64_t rng;
	uint64_t cursor;	/* --pattern stride */
	volatile uint64_t touching;	/* page index + 1 while it reads or writes one, else 0 */
};
static struct vcpu vc[MAX_VCPU];
static uint64_t g_corrupt;	/* atomic */
static uint64_t first_corrupt_page = UINT64_MAX;

static uint64_t now_rt(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void gen_page(uint64_t idx, uint32_t v, uint64_t *out)
{
	if (v == 0) {
		memset(out, 0, PS);
		return;
	}
	uint64_t s = (idx + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)v << 32 | v) ^ cfg.seed;
	out[0] = idx;
	out[1] = v;
	for (int i = 2; i < PS / 8; i++)
		out[i] = xs(&s);
}

static int check_page(uint64_t idx, uint32_t v)
{
	uint64_t want[PS / 8];

	gen_page(idx, v, want);
	return memcmp(ram + idx * PS, want, PS) == 0;
}

static uint64_t *subset;	/* the pages --pattern subset:PCT touches */
static uint64_t nsubset;

static uint64_t pick(struct vcpu *c)
{
	uint64_t r = xs(&c->rng);

	if (cfg.stride > 0) {	/* every stride-th page, in order: worst-case dirty runs */
		uint64_t n = (cfg.npages + (uint64_t)cfg.stride - 1) / (uint64_t)cfg.stride;
		c->cursor = (c->cursor + 1) % n;
		return c->cursor * (uint64_t)cfg.stride;
	}
	if (nsubset)
		return subset[(r >> 8) % nsubset];

	if (cfg.hot_pct > 0) {
		uint64_t hot = cfg.npages * (uint64_t)cfg.hot_pct / 100;
		if (hot && (r >> 60) < 14)	/* ~87% of accesses go to the hot set */
			return (r >> 8) % hot;
	}
	return (r >> 8) % cfg.npages;
}

static void wait_if_paused(struct vcpu *c)
{
	if (!paused_req)
		return;
	pthread_mutex_lock(&pause_lock);
	npaused++;
	pthread_cond_broadcast(&pause_cond);
	while (paused_req && !quit_req)
		pthread_cond_wait(&pause_cond, &pause_lock);
	npaused--;
	pthread_mutex_unlock(&pause_lock);
	(void)c;
}

static void *vcpu_main(void *p)
{
	((struct vcpu *)p)->tid = (int)gettid();
	struct vcpu *c = p;
	uint64_t buf[PS / 8];
	double interval = cfg.rate > 0 ? 1e9 / cfg.rate : 0;
	uint64_t next = now_rt();

	while (!quit_req) {
		wait_if_paused(c);
		if (quit_req)
			break;
		uint64_t idx = pick(c);
		pthread_mutex_t *l = &plock[idx % 256];
		pthread_mutex_lock(l);
		c->touching = idx + 1;
		uint32_t v = ver[idx];
		if (!check_page(idx, v)) {
			c->corrupt++;
			if (__atomic_fetch_add(&g_corrupt, 1, __ATOMIC_RELAXED) < 5) {
				const uint64_t *pg = (const uint64_t *)(ram + idx * PS);
				fprintf(stderr, "guest-sim: CORRUPT page %llu: holds index %llu version %llu, "
					"expected version %u\n", (unsigned long long)idx,
					(unsigned long long)pg[0], (unsigned long long)pg[1], v);
			}
			__atomic_compare_exchange_n(&first_corrupt_page, &(uint64_t){ UINT64_MAX },
						    idx, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		}
		if (cfg.write) {
			gen_page(idx, v + 1, buf);
			memcpy(ram + idx * PS, buf, PS);
			__atomic_store_n(&ver[idx], v + 1, __ATOMIC_RELEASE);
		}
		c->touching = 0;
		pthread_mutex_unlock(l);
		uint64_t t = now_rt();
		if (c->resumed && !c->switch_gap_ns && c->last_ns)
			c->switch_gap_ns = t - c->last_ns;	/* across the migration */
		if (c->last_ns && t - c->last_ns > c->max_gap_ns) {
			c->max_gap_ns = t - c->last_ns;
			c->max_gap_at = t;
		}
		c->last_ns = t;
		c->ops++;
		if (interval > 0) {
			next += (uint64_t)interval;
			if (next > t)
				usleep((useconds_t)((next - t) / 1000));
			else if (t - next > 100000000)
				next = t;	/* don't burst after a long stall */
		}
	}
	return NULL;
}

/* 0 once every vCPU waits; -1 (and no pause) when one has not within
 * 30 s: it is stuck touching a page (a fault nobody answers), which the
 * caller reports instead of hanging. */
static int pause_all(void)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&pause_lock);
	paused_req = 1;
	int rc = 0;
	while (npaused < cfg.vcpus && rc == 0)
		rc = pthread_cond_timedwait(&pause_cond, &pause_lock, &until);
	bool all = npaused >= cfg.vcpus;
	if (!all) {
		paused_req = 0;
		pthread_cond_broadcast(&pause_cond);
	}
	pthread_mutex_unlock(&pause_lock);
	return all ? 0 : -1;
}

static void resume_all(void)
{
	pthread_mutex_lock(&pause_lock);
	paused_req = 0;
	pthread_cond_broadcast(&pause_cond);
	pthread_mutex_unlock(&pause_lock);
}

static void start_vcpus(void)
{
	for (int i = 0; i < cfg.vcpus; i++) {
		vc[i].idx = i;
		vc[i].cursor = (uint64_t)i * (cfg.npages / (uint64_t)(cfg.stride ? cfg.stride : 1)) /
			       (uint64_t)cfg.vcpus;
		if (!vc[i].rng)
			vc[i].rng = cfg.seed * 7919 + (uint64_t)i * 104729 + now_rt();
		pthread_create(&vc[i].th, NULL, vcpu_main, &vc[i]);
	}
}

/* ---- device state ---- */

struct dev_hdr {
	uint32_t magic, vcpus;
	uint64_t npages, seed;
	uint64_t last_ns[MAX_VCPU], ops[MAX_VCPU], max_gap[MAX_VCPU];
};

static int write_all(int fd, const void *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w <= 0)
			return -1;
		b = (const char *)b + w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *b, size_t n)
{
	while (n) {
		ssize_t r = read(fd, b, n);
		if (r <= 0)
			return -1;
		b = (char *)b + r;
		n -= (size_t)r;
	}
	return 0;
}

static int tcp_connect(const char *addr, char *err, size_t el)
{
	char host[256];
	const char *c = strrchr(addr, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;

	if (!c || (size_t)(c - addr) >= sizeof(host)) {
		snprintf(err, el, "bad address %s", addr);
		return -1;
	}
	memcpy(host, addr, (size_t)(c - addr));
	host[c - addr] = 0;
	if (getaddrinfo(host, c + 1, &hints, &res)) {
		snprintf(err, el, "cannot resolve %s", addr);
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* Device state is downtime: ask for the same priority class as
	 * faultline's fault traffic (DSCP EF) on a shared, capped link. */
	int tos = 0xb8;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	for (int i = 0; fd >= 0 && i < 50; i++) {
		if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
			freeaddrinfo(res);
			return fd;
		}
		if (errno != ECONNREFUSED)
			break;
		usleep(100000);
	}
	snprintf(err, el, "cannot connect to destination VM at %s: %s", addr, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

/* Source: stop for good and ship the device state. */
static int do_migrate(const char *addr, char *reply, size_t rl)
{
	char err[640];
	int fd = tcp_connect(addr, err, sizeof(err));

	if (fd < 0) {
		snprintf(reply, rl, "error %s", err);
		return -1;	/* still running: nothing was stopped */
	}
	pause_all();
	struct dev_hdr h = { .magic = VMCTL_STATE_MAGIC, .vcpus = (uint32_t)cfg.vcpus,
			     .npages = cfg.npages, .seed = cfg.seed };
	for (int i = 0; i < cfg.vcpus; i++) {
		h.last_ns[i] = vc[i].last_ns;
		h.ops[i] = vc[i].ops;
		h.max_gap[i] = vc[i].max_gap_ns;
	}
	if (write_all(fd, &h, sizeof(h)) || write_all(fd, ver, cfg.npages * 4)) {
		close(fd);
		resume_all();
		snprintf(reply, rl, "error sending device state: %s", strerror(errno));
		return -1;
	}
	char ack;
	if (read_all(fd, &ack, 1) || ack != 'k') {
		close(fd);
		resume_all();
		snprintf(reply, rl, "error destination VM did not take the device state");
		return -1;
	}
	close(fd);
	frozen = 1;
	state = "migrated";
	snprintf(reply, rl, "ok stopped");
	return 0;
}

/* Destination: wait for the device state, then run. */
static int incoming(const char *addr)
{
	char host[256];
	const char *c = strrchr(addr, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;

	if (!c || (size_t)(c - addr) >= sizeof(host))
		return -1;
	memcpy(host, addr, (size_t)(c - addr));
	host[c - addr] = 0;
	if (getaddrinfo(host[0] ? host : NULL, c + 1, &hints, &res))
		return -1;
	int l = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, res->ai_addr, res->ai_addrlen) || listen(l, 1)) {
		fprintf(stderr, "guest-sim: cannot listen on %s: %s\n", addr, strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	state = "inmigrate";
	for (;;) {
		int fd = accept(l, NULL, NULL);
		if (fd < 0)
			continue;
		struct dev_hdr h;
		if (read_all(fd, &h, sizeof(h)) || h.magic != VMCTL_STATE_MAGIC ||
		    h.npages != cfg.npages || h.vcpus != (uint32_t)cfg.vcpus ||
		    read_all(fd, ver, cfg.npages * 4)) {
			fprintf(stderr, "guest-sim: bad device state (size or vCPU count differ)\n");
			close(fd);
			continue;
		}
		memcpy(ver0, ver, cfg.npages * 4);
		cfg.seed = h.seed;
		for (int i = 0; i < cfg.vcpus; i++) {
			vc[i].last_ns = h.last_ns[i];
			vc[i].ops = h.ops[i];
			vc[i].max_gap_ns = 0;	/* measured from the switchover on */
			vc[i].resumed = 1;
		}
		(void)!write(fd, "k", 1);
		close(fd);
		close(l);
		return 0;
	}
}

static void verify(char *reply, size_t rl)
{
	uint64_t bad = 0, first = UINT64_MAX, held_idx = 0, held_ver = 0;
	uint32_t want_ver = 0;
	unsigned char md[32];
	unsigned mdl = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint64_t buf[PS / 8];

	int was_paused = paused_req;
	if (!frozen && !was_paused && pause_all()) {
		int n = snprintf(reply, rl, "{\"error\":\"a vCPU did not pause within 30 s:");
		for (int i = 0; i < cfg.vcpus && n < (int)rl - 64; i++)
			if (vc[i].touching) {
				/* where the kernel holds it (handle_userfault: a fault nobody serves) */
				char wp[64], wchan[64] = "?";
				snprintf(wp, sizeof(wp), "/proc/self/task/%d/wchan", vc[i].tid);
				FILE *wf = fopen(wp, "re");
				if (wf) {
					if (!fgets(wchan, sizeof(wchan), wf))
						snprintf(wchan, sizeof(wchan), "?");
					fclose(wf);
				}
				n += snprintf(reply + n, rl - (size_t)n, " vCPU %d (tid %d) is touching page %llu (in %s);",
					      i, vc[i].tid, (unsigned long long)(vc[i].touching - 1), wchan);
			}
		snprintf(reply + n, rl - (size_t)n, " a fault nobody answers?\"}");
		EVP_MD_CTX_free(ctx);
		return;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (uint64_t i = 0; i < cfg.npages; i++) {
		if (!check_page(i, ver[i])) {
			if (!bad++) {
				first = i;
				held_idx = ((const uint64_t *)(ram + i * PS))[0];
				held_ver = ((const uint64_t *)(ram + i * PS))[1];
				want_ver = ver[i];
			}
		}
		/* Image at switchover: pages untouched since are hashed as they are
		 * in RAM; rewritten ones as they were (verified when first read). */
		if (ver0 && ver[i] != ver0[i]) {
			gen_page(i, ver0[i], buf);
			EVP_DigestUpdate(ctx, buf, PS);
		} else {
			EVP_DigestUpdate(ctx, ram + i * PS, PS);
		}
	}
	EVP_DigestFinal_ex(ctx, md, &mdl);
	EVP_MD_CTX_free(ctx);
	if (!frozen && !was_paused)
		resume_all();
	char hex[65];
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	uint64_t seen = __atomic_load_n(&g_corrupt, __ATOMIC_RELAXED);
	snprintf(reply, rl, "{\"verified_pages\":%llu,\"corrupt_pages\":%llu,\"first_corrupt\":%lld,"
		 "\"first_corrupt_holds\":\"index %llu version %llu, expected version %u (switchover %u)\","
		 "\"corrupt_reads\":%llu,\"sha256_switchover\":\"%s\"}",
		 (unsigned long long)cfg.npages, (unsigned long long)bad,
		 bad ? (long long)first : -1LL, (unsigned long long)held_idx, (unsigned long long)held_ver,
		 want_ver, bad && ver0 ? ver0[first] : 0, (unsigned long long)seen, hex);
}

static void query(char *reply, size_t rl)
{
	uint64_t ops = 0, gap = 0, sgap = 0, at = 0;

	for (int i = 0; i < cfg.vcpus; i++) {
		ops += vc[i].ops;
		if (vc[i].max_gap_ns > gap) {
			gap = vc[i].max_gap_ns;
			at = vc[i].max_gap_at;
		}
		if (vc[i].switch_gap_ns > sgap)
			sgap = vc[i].switch_gap_ns;
	}
	char tids[16 * MAX_VCPU] = "";
	for (int i = 0, n = 0; i < cfg.vcpus; i++)
		n += snprintf(tids + n, sizeof(tids) - (size_t)n, "%s%d", i ? "," : "", vc[i].tid);
	snprintf(reply, rl, "{\"state\":\"%s\",\"pid\":%d,\"ops\":%llu,\"corrupt_reads\":%llu,"
		 "\"max_stall_ms\":%.3f,\"switch_stall_ms\":%.3f,\"max_stall_at_ns\":%llu,"
		 "\"npages\":%llu,\"vcpu_tids\":[%s]}",
		 state, (int)getpid(), (unsigned long long)ops,
		 (unsigned long long)__atomic_load_n(&g_corrupt, __ATOMIC_RELAXED), (double)gap / 1e6,
		 (double)sgap / 1e6, (unsigned long long)at, (unsigned long long)cfg.npages, tids);
}

static void *ctl_main(void *arg)
{
	int l = (int)(intptr_t)arg;

	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		char cmd[512] = "", reply[1200];
		struct timeval tv = { 2, 0 };	/* a client that sends nothing does not hold us */
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t n = read(c, cmd, sizeof(cmd) - 1);
		if (n > 0) {
			cmd[n] = 0;
			char *nl = strchr(cmd, '\n');
			if (nl)
				*nl = 0;
		}
		if (!strncmp(cmd, "migrate ", 8)) {
			if (frozen || ver0)
				snprintf(reply, sizeof(reply), "error not a running source");
			else
				do_migrate(cmd + 8, reply, sizeof(reply));
		} else if (!strcmp(cmd, "query")) {
			query(reply, sizeof(reply));
		} else if (!strcmp(cmd, "verify")) {
			verify(reply, sizeof(reply));
		} else if (!strcmp(cmd, "quit")) {
			(void)!write(c, "ok\n", 3);
			close(c);
			quit_req = 1;
			resume_all();
			return NULL;
		} else {
			snprintf(reply, sizeof(reply), "error unknown command '%s'", cmd);
		}
		size_t rl = strlen(reply);
		reply[rl++] = '\n';
		(void)!write(c, reply, rl);
		close(c);
	}
}

static uint64_t parse_size(const char *s)
{
	char *e;
	double v = strtod(s, &e);

	switch (*e) {
	case 'k': case 'K': v *= 1024; break;
	case 'm': case 'M': v *= 1 << 20; break;
	case 'g': case 'G': v *= 1 << 30; break;
	case 0: break;
	default: return 0;
	}
	return (uint64_t)v;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: guest-sim --ram FILE --ctl SOCK [options]\n"
		"  --size N[KMG]     RAM size (default 64M)\n"
		"  --vcpus N         vCPU threads (default 2)\n"
		"  --rate N          page operations per second per vCPU, 0 = unthrottled (default 5000)\n"
		"  --pattern P       uniform | hot:PCT (PCT%% of pages take ~87%% of accesses) |\n"
		"                    stride:N (every Nth page in turn) | subset:PCT (a random PCT%% only)\n"
		"  --mode M          write (read, verify, rewrite; default) | read (read, verify)\n"
		"  --fill PCT        pages written before the run starts (default 75)\n"
		"  --seed N          content seed\n"
		"  --incoming H:P    start as a migration destination; wait for device state\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ram", 1, 0, 'r' }, { "ctl", 1, 0, 'c' }, { "size", 1, 0, 's' },
		{ "vcpus", 1, 0, 'v' }, { "rate", 1, 0, 'R' }, { "pattern", 1, 0, 'p' },
		{ "mode", 1, 0, 'm' }, { "fill", 1, 0, 'f' }, { "seed", 1, 0, 'S' },
		{ "incoming", 1, 0, 'i' }, { "help", 0, 0, 'h' }, { 0 }
	};
	int o;

	while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (o) {
		case 'r': cfg.ram = optarg; break;
		case 'c': cfg.ctl = optarg; break;
		case 's': cfg.size = parse_size(optarg); break;
		case 'v': cfg.vcpus = atoi(optarg); break;
		case 'R': cfg.rate = atof(optarg); break;
		case 'p':
			if (!strcmp(optarg, "uniform"))
				cfg.hot_pct = 0;
			else if (!strncmp(optarg, "hot:", 4) && atoi(optarg + 4) > 0 && atoi(optarg + 4) <= 100)
				cfg.hot_pct = atoi(optarg + 4);
			else if (!strncmp(optarg, "stride:", 7) && atoi(optarg + 7) > 0)
				cfg.stride = atoi(optarg + 7);
			else if (!strncmp(optarg, "subset:", 7) && atoi(optarg + 7) > 0 && atoi(optarg + 7) <= 100)
				cfg.subset_pct = atoi(optarg + 7);
			else {
				fprintf(stderr, "guest-sim: bad --pattern '%s'\n", optarg);
				return 2;
			}
			break;
		case 'm':
			if (strcmp(optarg, "write") && strcmp(optarg, "read")) {
				fprintf(stderr, "guest-sim: bad --mode '%s'\n", optarg);
				return 2;
			}
			cfg.write = !strcmp(optarg, "write");
			break;
		case 'f': cfg.fill_pct = atoi(optarg); break;
		case 'S': cfg.seed = strtoull(optarg, NULL, 0); break;
		case 'i': cfg.incoming = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!cfg.ram || !cfg.ctl || !cfg.size || cfg.size % PS || cfg.vcpus < 1 ||
	    cfg.vcpus > MAX_VCPU || cfg.fill_pct < 0 || cfg.fill_pct > 100) {
		fprintf(stderr, "guest-sim: need --ram and --ctl; --size a multiple of 4K; "
			"--vcpus 1..%d; --fill 0..100\n", MAX_VCPU);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	cfg.npages = cfg.size / PS;
	for (int i = 0; i < 256; i++)
		pthread_mutex_init(&plock[i], NULL);
	int fd = open(cfg.ram, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)cfg.size) < 0) {
		fprintf(stderr, "guest-sim: RAM file %s: %s\n", cfg.ram, strerror(errno));
		return 1;
	}
	ram = mmap(NULL, cfg.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED) {
		fprintf(stderr, "guest-sim: cannot map %s: %s\n", cfg.ram, strerror(errno));
		return 1;
	}
	close(fd);
	ver = calloc(cfg.npages, 4);
	if (cfg.subset_pct) {	/* the same subset on both hosts: it derives from the seed */
		uint64_t x = cfg.seed * 0x9E3779B97F4A7C15ull + 1;
		subset = calloc(cfg.npages, sizeof(*subset));
		for (uint64_t i = 0; subset && i < cfg.npages; i++)
			if (xs(&x) % 100 < (uint64_t)cfg.subset_pct)
				subset[nsubset++] = i;
		if (!nsubset)
			subset[nsubset++] = 0;
	}
	if (cfg.incoming)
		ver0 = calloc(cfg.npages, 4);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", cfg.ctl);
	unlink(cfg.ctl);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 8)) {
		fprintf(stderr, "guest-sim: control socket %s: %s\n", cfg.ctl, strerror(errno));
		return 1;
	}
	if (!cfg.incoming) {
		/* Boot: write the first fill% of pages once (the rest stay zero). */
		uint64_t n = cfg.npages * (uint64_t)cfg.fill_pct / 100;
		for (uint64_t i = 0; i < n; i++) {
			gen_page(i, 1, (uint64_t *)(ram + i * PS));
			ver[i] = 1;
		}
	}
	pthread_t ct;
	pthread_create(&ct, NULL, ctl_main, (void *)(intptr_t)l);
	if (cfg.incoming) {
		if (incoming(cfg.incoming))
			return 1;
		state = "running";
	}
	printf("guest-sim: %s, %llu pages, %d vCPUs, pid %d\n", cfg.incoming ? "resumed" : "running",
	       (unsigned long long)cfg.npages, cfg.vcpus, (int)getpid());
	fflush(stdout);
	start_vcpus();
	for (int i = 0; i < cfg.vcpus; i++)
		pthread_join(vc[i].th, NULL);
	return __atomic_load_n(&g_corrupt, __ATOMIC_RELAXED) ? 3 : 0;
}
