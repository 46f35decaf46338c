/* Command-line values: every number, size, address and rate is checked
 * before anything is created; a bad one is exit 2 with one line naming the
 * option and what it accepts. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *g_cmd = "faultline";

void cli_args_command(const char *cmd)
{
	g_cmd = cmd;
}

static void bad(const char *opt, const char *arg, const char *want)
{
	fprintf(stderr, "faultline %s: %s '%s': %s\n", g_cmd, opt, arg, want);
	exit(2);
}

long cli_int(const char *opt, const char *arg, long min, long max)
{
	char *e, want[96];
	errno = 0;
	long v = strtol(arg, &e, 10);

	if (!*arg || *e || errno || v < min || v > max) {
		snprintf(want, sizeof(want), "want a whole number in %ld..%ld", min, max);
		bad(opt, arg, want);
	}
	return v;
}

double cli_double(const char *opt, const char *arg, double min, double max)
{
	char *e, want[96];
	errno = 0;
	double v = strtod(arg, &e);

	if (!*arg || *e || errno || !(v >= min && v <= max)) {
		snprintf(want, sizeof(want), "want a number in %g..%g", min, max);
		bad(opt, arg, want);
	}
	return v;
}

const char *cli_addr(const char *opt, const char *arg)
{
	const char *colon = strrchr(arg, ':');
	char *e;

	if (!colon || colon == arg || !colon[1])
		bad(opt, arg, "want HOST:PORT");
	errno = 0;
	long port = strtol(colon + 1, &e, 10);
	if (*e || errno || port < 1 || port > 65535)
		bad(opt, arg, "the port must be a number in 1..65535");
	return arg;
}

const char *cli_addr_uri(const char *opt, const char *arg)
{
	/* QEMU's migration URI: tcp:HOST:PORT */
	if (strncmp(arg, "tcp:", 4))
		bad(opt, arg, "want tcp:HOST:PORT");
	cli_addr(opt, arg + 4);
	return arg;
}

uint64_t cli_size(const char *opt, const char *arg, uint64_t min, uint64_t align)
{
	char *e, want[128];
	errno = 0;
	double v = strtod(arg, &e);
	double mul = 1;

	switch (*e) {
	case 'k': case 'K': mul = 1024; e++; break;
	case 'm': case 'M': mul = 1 << 20; e++; break;
	case 'g': case 'G': mul = 1 << 30; e++; break;
	case 't': case 'T': mul = (double)(1ull << 40); e++; break;
	}
	double bytes = v * mul;
	snprintf(want, sizeof(want), "want a size of at least %llu bytes, a multiple of %llu (e.g. 64M, 1G)",
		 (unsigned long long)min, (unsigned long long)align);
	if (e == arg || *e || errno || !(bytes >= (double)min) || bytes > 1e15 ||
	    (uint64_t)bytes % align)
		bad(opt, arg, want);
	return (uint64_t)bytes;
}

const char *cli_pattern(const char *opt, const char *arg)
{
	long n;
	char *e;

	if (!strcmp(arg, "uniform"))
		return arg;
	const char *colon = strchr(arg, ':');
	if (colon) {
		n = strtol(colon + 1, &e, 10);
		if (colon[1] && !*e &&
		    (((!strncmp(arg, "hot:", 4) || !strncmp(arg, "subset:", 7)) && n >= 1 && n <= 100) ||
		     (!strncmp(arg, "stride:", 7) && n >= 1 && n <= 1 << 20)))
			return arg;
	}
	bad(opt, arg, "want uniform, hot:PCT, subset:PCT (PCT 1..100) or stride:N");
	return NULL;
}

const char *cli_rate(const char *opt, const char *arg)
{
	static const char *const units[] = { "bit", "kbit", "mbit", "gbit", "tbit",
					     "bps", "kbps", "mbps", "gbps", "tbps" };
	char *e;
	double v = strtod(arg, &e);

	if (e != arg && v > 0)
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (!strcasecmp(e, units[i]))
				return arg;
	bad(opt, arg, "want a rate tc understands, e.g. 200mbit or 1gbit");
	return NULL;
}

const char *cli_oneof(const char *opt, const char *arg, const char *const *words, const char *want)
{
	for (int i = 0; words[i]; i++)
		if (!strcmp(arg, words[i]))
			return arg;
	bad(opt, arg, want);
	return NULL;
}
