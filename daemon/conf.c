/* The daemon's configuration: an INI file read with inih (Debian's
 * libinih), each key checked, every mistake one line naming it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "faultline/log.h"
#include "core/paths.h"
#include "daemon.h"

struct ctx {
	struct dmn_conf *c;
	struct fl_error *err;
};

static int set_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -1;
	strcpy(dst, v);
	return 0;
}

static int set_bool(bool *dst, const char *v)
{
	if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1"))
		*dst = true;
	else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0"))
		*dst = false;
	else
		return -1;
	return 0;
}

static int set_num(double *dst, const char *v, double lo, double hi)
{
	char *end;
	double x = strtod(v, &end);

	if (end == v || *end || x < lo || x > hi)
		return -1;
	*dst = x;
	return 0;
}

static int handler(void *user, const char *sec, const char *key, const char *v)
{
	struct ctx *x = user;
	struct dmn_conf *c = x->c;
	double n;
	int bad = 0;

	if (x->err->code)
		return 0;
#define IS(s, k) (!strcmp(sec, s) && !strcmp(key, k))
	if (IS("daemon", "listen"))
		bad = set_str(c->listen, sizeof(c->listen), v);
	else if (IS("daemon", "agent_port"))
		bad = set_num(&n, v, 1, 65535) ? -1 : (c->agent_port = (int)n, 0);
	else if (IS("daemon", "state_dir"))
		bad = set_str(c->state_dir, sizeof(c->state_dir), v);
	else if (IS("daemon", "run_dir"))
		bad = set_str(c->run_dir, sizeof(c->run_dir), v);
	else if (IS("daemon", "shim_lib"))
		bad = set_str(c->shim_lib, sizeof(c->shim_lib), v);
	else if (IS("daemon", "recover_timeout"))
		bad = set_num(&c->recover_timeout_s, v, 0, 86400);
	else if (IS("daemon", "log_level")) {
		static const char *const lv[] = { "error", "warn", "info", "debug" };
		bad = -1;
		for (int i = 0; i < 4; i++)
			if (!strcmp(v, lv[i])) {
				c->log_level = i;
				bad = 0;
			}
	} else if (IS("tls", "x509_dir"))
		bad = set_str(c->x509_dir, sizeof(c->x509_dir), v);
	else if (IS("tls", "psk_file"))
		bad = set_str(c->psk_file, sizeof(c->psk_file), v);
	else if (IS("tls", "encrypt_data"))
		bad = set_bool(&c->encrypt_data, v);
	else if (IS("tls", "insecure"))
		bad = set_bool(&c->insecure, v);
	else if (IS("peers", "allow"))
		bad = set_str(c->allow, sizeof(c->allow), v);
	else if (IS("bandwidth", "precopy_mbps"))
		bad = set_num(&c->precopy_mbps, v, 0, 1e7);
	else if (IS("bandwidth", "postcopy_mbps"))
		bad = set_num(&c->postcopy_mbps, v, 0, 1e7);
	else {
		fl_error_set(x->err, -EINVAL, "unknown key '%s' in [%s]", key, sec);
		return 0;
	}
#undef IS
	if (bad)
		fl_error_set(x->err, -EINVAL, "[%s] %s = '%s' is not a valid value", sec, key, v);
	return !bad;
}

int dmn_conf_load(const char *path, struct dmn_conf *c, struct fl_error *err)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "0.0.0.0:%d", DMN_DEFAULT_PORT);
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/faultline");
	snprintf(c->run_dir, sizeof(c->run_dir), "/run/faultline");
	fl_path_find("../shim/libfaultline-shim.so", FL_SHIM_REL, FL_SHIM_PATH, c->shim_lib, sizeof(c->shim_lib));
	c->encrypt_data = true;
	c->log_level = FL_LOG_INFO;
	c->recover_timeout_s = 600;
	FILE *f = fopen(path, "re");
	if (!f)
		return fl_error_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
	struct ctx x = { c, err };
	int rc = ini_parse_file(f, handler, &x);
	fclose(f);
	if (err->code) {	/* inih returns the line of the first refusal */
		char t[FL_ERROR_TEXT];
		snprintf(t, sizeof(t), "%s", err->text);
		return fl_error_set(err, err->code, "%s:%d: %s", path, rc, t);
	}
	if (rc)
		return fl_error_set(err, -EINVAL, "%s:%d: not an INI line", path, rc);
	if (!c->agent_port) {
		const char *colon = strrchr(c->listen, ':');
		c->agent_port = (colon ? atoi(colon + 1) : DMN_DEFAULT_PORT) + 1;
	}
	if (c->x509_dir[0] && c->psk_file[0])
		return fl_error_set(err, -EINVAL, "%s: give x509_dir or psk_file in [tls], not both", path);
	return 0;
}

void dmn_conf_tls(const struct dmn_conf *c, struct fl_tls_opts *o)
{
	fl_tls_opts_default(o);
	o->x509_dir = c->x509_dir[0] ? c->x509_dir : NULL;
	o->psk_file = c->psk_file[0] ? c->psk_file : NULL;
}

/* ip against "a.b.c.d", "a.b.c.d/n" entries; IPv6 by exact match only */
bool dmn_conf_allows(const struct dmn_conf *c, const char *ip)
{
	char list[sizeof(c->allow)], *save = NULL;
	struct in_addr a;

	if (!c->allow[0])
		return true;
	snprintf(list, sizeof(list), "%s", c->allow);
	bool v4 = inet_pton(AF_INET, ip, &a) == 1;
	for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		char *slash = strchr(t, '/');
		int bits = slash ? atoi(slash + 1) : 32;
		if (slash)
			*slash = 0;
		struct in_addr net;
		if (v4 && inet_pton(AF_INET, t, &net) == 1 && bits >= 0 && bits <= 32) {
			uint32_t mask = bits ? htonl(~0u << (32 - bits)) : 0;
			if ((a.s_addr & mask) == (net.s_addr & mask))
				return true;
		} else if (!strcmp(t, ip)) {
			return true;
		}
	}
	return false;
}
