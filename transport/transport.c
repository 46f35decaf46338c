/* What every transport shares: the registry by name, default options, and
 * the last error text of this thread. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "faultline/rdma.h"
#include "faultline/transport.h"

static __thread char g_err[320];

const char *fl_transport_last_error(void)
{
	return g_err[0] ? g_err : "no detail";
}

void fl_transport_set_error(const char *text)
{
	snprintf(g_err, sizeof(g_err), "%s", text);
}

void fl_transport_set_errorf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g_err, sizeof(g_err), fmt, ap);
	va_end(ap);
}

void fl_transport_opts_default(struct fl_transport_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 5000;
	o->spin_us = 50;
}

const struct fl_transport_ops *fl_transport_find(const char *name)
{
	if (!strcmp(name, "tcp"))
		return &fl_transport_tcp;
	if (!strcmp(name, "rdma"))
		return fl_transport_rdma_ops;	/* NULL without rdma-core */
	return NULL;
}
