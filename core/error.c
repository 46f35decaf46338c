/* The library's one error type (see faultline/error.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "faultline/error.h"

static int vset(struct fl_error *e, int code, const char *fmt, va_list ap)
{
	char text[FL_ERROR_TEXT];	/* fmt may quote e->text */

	vsnprintf(text, sizeof(text), fmt, ap);
	memcpy(e->text, text, sizeof(text));
	/* one line: a peer's or a VMM's text must not break a log line */
	for (char *p = e->text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	e->code = code < 0 ? code : -EIO;
	return e->code;
}

int fl_error_set(struct fl_error *e, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int rc = vset(e, code, fmt, ap);
	va_end(ap);
	return rc;
}

int fl_error_first(struct fl_error *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (e->code)
		return e->code;
	va_start(ap, fmt);
	int rc = vset(e, code, fmt, ap);
	va_end(ap);
	return rc;
}

void fl_error_clear(struct fl_error *e)
{
	e->code = 0;
	e->text[0] = 0;
}

const char *fl_error_text(const struct fl_error *e)
{
	return e && e->text[0] ? e->text : "no detail";
}
