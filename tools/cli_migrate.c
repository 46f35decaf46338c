/* migrate, qemu migrate, demo: the library's controller (migrate/) run
 * from the command line, with a progress line and a summary. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "faultline/migrate.h"

struct bar {
	bool tty;
	uint64_t last_print;
};

static void show_progress(void *arg, const struct fl_migration_progress *p)
{
	struct bar *b = arg;
	double pct = p->percent >= 0 ? p->percent : 0;
	char phase[32], eta[24] = "", dirty[32] = "";

	if (p->round)
		snprintf(phase, sizeof(phase), "%s %u", p->phase, p->round);
	else
		snprintf(phase, sizeof(phase), "%s", p->phase);
	if (p->eta_s >= 0)
		snprintf(eta, sizeof(eta), " ETA %.1fs", p->eta_s);
	if (p->round && p->dirty_rate_mbps > 0)
		snprintf(dirty, sizeof(dirty), " dirty %.0f Mbit/s", p->dirty_rate_mbps);
	if (b->tty) {
		int w = 24, fill = (int)(pct * w / 100);
		fprintf(stderr, "\r[%.*s%*s] %5.1f%% %-11s %8.1f MiB %6.0f Mbit/s%s%s %5.1fs\033[K", fill,
			"########################", w - fill, "", pct, phase, (double)p->bytes / 1048576.0,
			p->rate_mbps, dirty, eta, p->elapsed_s);
	} else if (cli_now_ns() - b->last_print > 1000000000ull) {
		/* Not a terminal: plain lines on stdout, stderr stays for errors. */
		printf("progress: %s %.1f%% %.1f MiB %.0f Mbit/s%s%s %.1fs\n", phase, pct,
		       (double)p->bytes / 1048576.0, p->rate_mbps, dirty, eta, p->elapsed_s);
		fflush(stdout);
		b->last_print = cli_now_ns();
	}
}

int cli_migrate(struct fl_migration_opts *o, bool json)
{
	struct bar b = { .tty = isatty(2) };
	struct fl_migration *m = NULL;
	struct fl_error e = { 0 };
	bool named = o->id != NULL;

	o->progress = show_progress;
	o->progress_arg = &b;
	if (fl_migration_create(o, &m, &e)) {
		fprintf(stderr, "faultline migrate: %s\n", e.text);
		return 1;
	}
	if (!named)
		fprintf(stderr, "faultline migrate: migration id %s\n", fl_migration_id(m));
	if (fl_migration_start(m)) {
		/* nothing started: the VM runs on as before */
		fprintf(stderr, "faultline migrate: %s\n", fl_migration_error(m)->text);
		fl_migration_destroy(m);
		return 1;
	}
	int rc = fl_migration_wait(m);
	if (b.tty)
		fprintf(stderr, "\n");
	if (strcmp(fl_migration_state(m), "completed"))
		fprintf(stderr, "faultline migrate: %s: %s\n", fl_migration_state(m), fl_migration_error(m)->text);
	char *sum = fl_migration_summary(m);
	if (sum)
		fputs(sum, stderr);
	free(sum);
	char *j = json ? fl_migration_result_json(m) : NULL;
	if (j)
		printf("%s\n", j);
	free(j);
	fflush(stdout);
	/* completed, but not as asked (a check, the placement) */
	if (rc && !fl_migration_error(m)->code)
		rc = -1;
	if (rc && !strcmp(fl_migration_state(m), "completed"))
		fprintf(stderr, "faultline migrate: %s\n", fl_migration_error(m)->text);
	fl_migration_destroy(m);
	return rc ? 1 : 0;
}
