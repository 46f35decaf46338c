/* An embedder of libfaultline (the daemon will be one): built against the
 * installed umbrella header and shared library (pkg-config), it runs a
 * migration through fl_migration_*, watches progress, takes the library's
 * messages through the log callback, and in "abort" mode cancels from the
 * progress callback as soon as pre-copy runs.
 *   embed complete|abort SRC_SHIM DST_SHIM SRC_CTL DST_CTL VM_URI LISTEN DIR
 * Prints the result JSON on stdout, then "progress_calls=N log_lines=N";
 * exit 0 when the outcome is the one the mode wants. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faultline.h>

static int progress_calls, log_lines, abort_sent;
static struct fl_migration *mig;
static bool want_abort;

static void on_log(void *arg, enum fl_log_level level, const char *who, const char *msg)
{
	(void)arg;
	log_lines++;
	fprintf(stderr, "embed log %d %s: %s\n", (int)level, who, msg);
}

static void on_progress(void *arg, const struct fl_migration_progress *p)
{
	(void)arg;
	progress_calls++;
	if (want_abort && !abort_sent && !strcmp(p->phase, "precopy")) {
		struct fl_error e = { 0 };
		abort_sent = 1;
		if (fl_migration_abort(mig, &e))
			fprintf(stderr, "embed: abort refused: %s\n", e.text);
		else
			fprintf(stderr, "embed: abort sent at %.1f%% of round %u\n", p->percent, p->round);
	}
}

int main(int argc, char **argv)
{
	struct fl_migration_opts o;
	struct fl_error e = { 0 };

	if (argc != 9) {
		fprintf(stderr, "usage: embed complete|abort SRC_SHIM DST_SHIM SRC_CTL DST_CTL VM_URI LISTEN DIR\n");
		return 2;
	}
	want_abort = !strcmp(argv[1], "abort");
	fl_log_set(on_log, NULL);
	fl_migration_opts_default(&o);
	o.id_prefix = "embed";
	o.status_dir = argv[8];
	o.source.listen = argv[7];
	o.source.shim_sock = argv[2];
	o.dest.shim_sock = argv[3];
	o.progress = on_progress;
	if (want_abort) {	/* a pre-copy that does not end by itself */
		o.source.max_rounds = 50;
		o.source.downtime_ms = 1;
	}
	if (fl_vmm_guestsim_create(argv[4], argv[5], argv[6], &o.vmm, &e)) {
		fprintf(stderr, "embed: %s\n", e.text);
		return 1;
	}
	if (fl_migration_create(&o, &mig, &e)) {
		fprintf(stderr, "embed: %s\n", e.text);
		return 1;
	}
	if (fl_migration_start(mig)) {
		fprintf(stderr, "embed: %s\n", fl_migration_error(mig)->text);
		return 1;
	}
	int rc = fl_migration_wait(mig);
	char *j = fl_migration_result_json(mig);
	printf("%s\nprogress_calls=%d log_lines=%d\n", j ? j : "{}", progress_calls, log_lines);
	free(j);
	const struct fl_report *d = fl_migration_report(mig, false);
	fprintf(stderr, "embed: %s, %llu pages, error '%s'\n", fl_migration_state(mig),
		(unsigned long long)fl_report_get(d, FL_REPORT_TOTAL_PAGES), fl_migration_error(mig)->text);
	bool ok = want_abort ? !strcmp(fl_migration_state(mig), "cancelled") && rc == -ECANCELED
			     : rc == 0;
	fl_migration_destroy(mig);
	fl_vmm_destroy(o.vmm);
	return ok ? 0 : 1;
}
