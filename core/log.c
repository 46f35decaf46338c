/* Library messages to the embedder's callback (see faultline/log.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>

#include "faultline/log.h"

static fl_log_fn g_fn;
static void *g_arg;

void fl_log_set(fl_log_fn fn, void *arg)
{
	g_arg = arg;
	__atomic_store_n(&g_fn, fn, __ATOMIC_RELEASE);
}

void fl_log(enum fl_log_level level, const char *who, const char *fmt, ...)
{
	fl_log_fn fn = __atomic_load_n(&g_fn, __ATOMIC_ACQUIRE);
	char msg[1024];
	va_list ap;

	if (!fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn(g_arg, level, who, msg);
}
