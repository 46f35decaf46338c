/* What every transport shares: the registry by name, default options, and
 * the last error text of this thread. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "faultline/rdma.h"
#include "faultline/transport.h"
#include "transport/int.h"

/* Per thread, like errno: the ops return -errno and many threads call them. */
static __thread struct fl_error g_err;

const struct fl_error *fl_transport_error(void)
{
	return &g_err;
}

int tp_errorf(int code, const char *fmt, ...)
{
	char text[FL_ERROR_TEXT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return fl_error_set(&g_err, code, "%s", text);
}

void fl_transport_opts_default(struct fl_transport_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->connect_timeout_ms = 5000;
	o->spin_us = 50;
	o->rdma_signal_every = 4;
	o->rdma_initiator_depth = 16;
	o->rdma_sq_depth = 256;
}

const struct fl_transport_ops *fl_transport_find(const char *name)
{
	if (!strcmp(name, "tcp"))
		return &fl_transport_tcp;
	if (!strcmp(name, "rdma"))
		return fl_transport_rdma_ops;	/* NULL without rdma-core */
	return NULL;
}
