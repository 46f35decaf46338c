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

#include "bench/bench.h"

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
