/* Where a faultline program finds its parts (the shim, guest-sim): beside
 * it in the build tree, else where `make install` put them relative to the
 * program (so a DESTDIR or moved tree works), else the configured path.
 * The build defines FL_SHIM_PATH/FL_SHIM_REL and FL_LIBEXEC_PATH/_REL. */
#ifndef FL_CORE_PATHS_H
#define FL_CORE_PATHS_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FL_SHIM_PATH
#define FL_SHIM_PATH "/usr/local/lib/faultline/libfaultline-shim.so"
#define FL_SHIM_REL "../lib/faultline/libfaultline-shim.so"
#endif
#ifndef FL_LIBEXEC_PATH
#define FL_LIBEXEC_PATH "/usr/local/libexec/faultline"
#define FL_LIBEXEC_REL "../libexec/faultline"
#endif

/* tree: the path from the program's directory in the build tree;
 * rel, abs: the installed one, relative to the program and absolute. */
static inline const char *fl_path_find(const char *tree, const char *rel, const char *abs, char *buf, size_t len)
{
	char dir[4096];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	const char *cand[2] = { tree, rel };

	if (n > 0) {
		dir[n] = 0;
		char *s = strrchr(dir, '/');
		if (s)
			*s = 0;
		for (int i = 0; i < 2; i++) {
			int w = snprintf(buf, len, "%s/%s", dir, cand[i]);
			char real[PATH_MAX];
			if (w > 0 && (size_t)w < len && !access(buf, R_OK)) {	/* (too long for buf: none) */
				if (realpath(buf, real) && strlen(real) < len)
					strcpy(buf, real);	/* said without the ".." */
				return buf;
			}
		}
	}
	snprintf(buf, len, "%s", abs);
	return buf;
}

#endif
