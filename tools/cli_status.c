/* status, list, show (and show --plot), abort, force-complete: watching and
 * steering the migrations of this host through their status files and the
 * source agent's operator socket. */
#define _GNU_SOURCE
#include <glob.h>
#include <json-c/json.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int usage_error(const char *cmd, const char *msg)
{
	fprintf(stderr, "faultline %s: %s (see 'faultline %s --help')\n", cmd, msg, cmd);
	return 2;
}

int cli_status(int argc, char **argv)
{
	const char *dir = NULL, *id = NULL, *plot = NULL;
	bool json = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--status-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--plot") && i + 1 < argc)
			plot = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: faultline status|list|show [ID] [--status-dir DIR] [--json]\n"
			       "       faultline show ID --plot FILE.png [--status-dir DIR]\n"
			       "Show the state and progress of migrations on this host; --plot draws the\n"
			       "timeline of a finished one (pages present, rates, the switchover; gnuplot).\n");
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "faultline status: unknown or incomplete option '%s' (see 'faultline status --help')\n",
				argv[i]);
			return 2;
		}
		else
			id = argv[i];
	}
	/* with a daemon here, its state directory (history kept across restarts) */
	char *ddir = dir ? NULL : cli_daemon_state_dir();
	if (!dir)
		dir = ddir ? ddir : DEFAULT_STATUS_DIR;
	if (plot) {
		if (!id)
			return usage_error("show", "--plot needs the migration ID");
		return cli_plot_timeline(dir, id, plot);
	}
	char pat[4096];
	glob_t g;
	snprintf(pat, sizeof(pat), "%s/%s.*.json", dir, id ? id : "*");
	if (glob(pat, 0, NULL, &g) != 0) {
		if (id) {
			fprintf(stderr, "faultline status: no migration '%s' on this host\n", id);
			return 1;
		}
		if (json)
			printf("[]\n");
		else
			printf("no migrations\n");
		return 0;
	}
	json_object *arr = json_object_new_array();
	for (size_t i = 0; i < g.gl_pathc; i++) {
		size_t pl = strlen(g.gl_pathv[i]);
		if (pl > 12 && !strcmp(g.gl_pathv[i] + pl - 12, ".result.json"))
			continue;	/* the agents' status lines only; show --plot reads it */
		json_object *s = json_object_from_file(g.gl_pathv[i]);
		if (!s)
			continue;
		if (json)
			json_object_array_add(arr, s);
		else {
			/* the phase's own share (a pre-copy round, then post-copy) */
			char phase[40], pct[16] = "     -", eta[24] = "";
			json_object *x;
			if (cli_jd(s, "round") > 0 && !strcmp(cli_js(s, "state") ? cli_js(s, "state") : "", "precopy"))
				snprintf(phase, sizeof(phase), "precopy %.0f", cli_jd(s, "round"));
			else
				snprintf(phase, sizeof(phase), "%s", cli_js(s, "state") ? cli_js(s, "state") : "?");
			if (json_object_object_get_ex(s, "percent", &x) && x)
				snprintf(pct, sizeof(pct), "%5.1f%%", json_object_get_double(x));
			if (json_object_object_get_ex(s, "eta_s", &x) && x)
				snprintf(eta, sizeof(eta), " ETA %.1fs", json_object_get_double(x));
			printf("%-20s %-6s %-15s %s %10.1f MiB %6.0f Mbit/s%s%s%s\n", cli_js(s, "id"),
			       cli_js(s, "role"), phase, pct, cli_jd(s, "bytes") / 1048576.0, cli_jd(s, "rate_mbps"),
			       eta, cli_js(s, "error") ? "  error: " : "", cli_js(s, "error") ? cli_js(s, "error") : "");
			json_object_put(s);
		}
	}
	if (json)
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(arr);
	globfree(&g);
	return 0;
}

/* abort / force-complete: one line to the source agent's operator socket. */
int cli_operator(const char *verb, int argc, char **argv)
{
	const char *dir = NULL, *id = NULL, *addr = NULL;
	char reply[512], line[320];
	bool recover = !strcmp(verb, "recover");

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--status-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (recover && !strcmp(argv[i], "--address") && i + 1 < argc)
			addr = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: faultline %s ID [--status-dir DIR]%s\n%s\n", verb,
			       recover ? " [--address HOST:PORT]" : "",
			       !strcmp(verb, "abort")
				       ? "Stop a migration before switchover; the VM keeps running on the source."
			       : recover ? "Run on the destination host. A post-copy paused on a lost link reconnects\n"
					   "now instead of at its next backoff; --address: the source is now reached there."
				       : "End pre-copy now and switch to post-copy.");
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "faultline %s: unknown or incomplete option '%s' (see 'faultline %s --help')\n",
				verb, argv[i], verb);
			return 2;
		}
		else
			id = argv[i];
	}
	if (!id)
		return usage_error(verb, "need the migration ID");
	if (addr && (!strchr(addr, ':') || strlen(addr) > 256))
		return usage_error(verb, "--address is HOST:PORT");
	snprintf(line, sizeof(line), "%s%s%s", verb, addr ? " " : "", addr ? addr : "");
	char *daemon_dir = NULL;
	if (recover && !dir) {	/* the destination agent's socket, on this host: its daemon's, or ours */
		daemon_dir = cli_daemon_state_dir();
		dir = daemon_dir ? daemon_dir : DEFAULT_STATUS_DIR;
	}
	/* with a daemon here, it answers: from the destination host it asks
	 * the source's daemon */
	if (!dir) {
		char err[512];
		int rc = cli_daemon_request(verb, id, reply, sizeof(reply), err, sizeof(err));
		if (rc != -ENOENT && rc != -ECONNREFUSED) {
			if (rc)
				fprintf(stderr, "faultline %s: %s\n", verb, err);
			else
				printf("%s: %s\n", id, reply);
			return rc ? 1 : 0;
		}
		dir = DEFAULT_STATUS_DIR;
	}
	struct fl_error e = { 0 };
	int rc = fl_migration_request(dir, id, line, reply, sizeof(reply), &e);
	free(daemon_dir);
	if (rc) {
		fprintf(stderr, "faultline %s: %s\n", verb, e.text);
		return 1;
	}
	printf("%s: %s\n", id, reply);
	return 0;
}

