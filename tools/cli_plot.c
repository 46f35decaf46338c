/* faultline show ID --plot FILE.png: the timeline of a finished migration
 * (pages present on the destination, pull and fault rates, the switchover
 * marked) from the controller's 100 ms samples, drawn by gnuplot. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_plot_timeline(const char *dir, const char *id, const char *png)
{
	char *path = fl_migration_status_path(dir, id, "result");
	json_object *r = path ? json_object_from_file(path) : NULL, *tl;
	char dat[] = "/tmp/faultline-plot-XXXXXX";
	int rc = 1;

	if (!r || !json_object_object_get_ex(r, "timeline", &tl) || !json_object_is_type(tl, json_type_array) ||
	    json_object_array_length(tl) < 2) {
		fprintf(stderr, "faultline show: no timeline for migration '%s' in %s\n", id, path ? path : dir);
		goto out;
	}
	int fd = mkstemp(dat);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		fprintf(stderr, "faultline show: %s: %s\n", dat, strerror(errno));
		goto out;
	}
	/* t_ms present_pages pull_mbps fault_rate (per s), from successive samples */
	double pt = 0, pb = 0, pf = 0, total = cli_jd(r, "total_pages");
	for (size_t i = 0; i < json_object_array_length(tl); i++) {
		json_object *p = json_object_array_get_idx(tl, i);
		double t = json_object_get_double(json_object_array_get_idx(p, 0));
		double pages = json_object_get_double(json_object_array_get_idx(p, 2));
		double b = json_object_get_double(json_object_array_get_idx(p, 3));
		double fl = json_object_get_double(json_object_array_get_idx(p, 4));
		double dt = (t - pt) / 1e3;
		if (i && dt > 0)
			fprintf(f, "%.1f %.2f %.1f %.1f\n", t, total > 0 ? 100 * pages / total : 0,
				(b - pb) * 8 / 1e6 / dt, (fl - pf) / dt);
		pt = t, pb = b, pf = fl;
	}
	fclose(f);
	double sw = cli_jd(r, "switch_at_ms");
	char arrow[160] = "", cmd[8192];
	if (sw > 0)	/* the switchover as a vertical line */
		snprintf(arrow, sizeof(arrow), "set arrow from %.1f,graph 0 to %.1f,graph 1 nohead lc rgb 'red' dt 2;",
			 sw, sw);
	snprintf(cmd, sizeof(cmd),
		 "gnuplot -e \"set terminal png size 1000,560; set output '%s';"
		 " set title 'faultline migration %s'; set xlabel 'ms since start';"
		 " set ylabel 'pages present on the destination (%%)'; set yrange [0:105];"
		 " set y2label 'Mbit/s, faults/s'; set y2tics; set ytics nomirror; set key top left; %s"
		 " plot '%s' using 1:2 with lines lw 2 title 'present (%%)',"
		 " '' using 1:3 axes x1y2 with lines title 'pull Mbit/s',"
		 " '' using 1:4 axes x1y2 with lines title 'faults/s'\"",
		 png, id, arrow, dat);
	rc = system(cmd) == 0 ? 0 : 1;
	if (rc)
		fprintf(stderr, "faultline show: gnuplot failed (is it installed?)\n");
	else
		printf("%s\n", png);
	unlink(dat);
out:
	json_object_put(r);
	free(path);
	return rc;
}
