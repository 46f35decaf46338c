/* One error type for the whole library: a negative errno and one line of
 * text naming the problem. Every failure an embedder can see (a run's
 * report, a transport call, a shim or QMP exchange) is one of these. */
#ifndef FAULTLINE_ERROR_H
#define FAULTLINE_ERROR_H

#define FL_ERROR_TEXT 320

struct fl_error {
	int code;			/* 0 or -errno */
	char text[FL_ERROR_TEXT];	/* one line; "" when code is 0 */
};

/* Record a failure (code < 0; anything else becomes -EIO). Returns the
 * code, so `return fl_error_set(e, -EINVAL, "...")` reads as one step.
 * fmt may quote e->text itself: the old text is read before it is replaced. */
int fl_error_set(struct fl_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same, but an earlier failure stands: the first one is the cause
 * (agents whose threads fail together after one loss). */
int fl_error_first(struct fl_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void fl_error_clear(struct fl_error *e);
/* e->text, or "no detail" when nothing was recorded. */
const char *fl_error_text(const struct fl_error *e);

#endif
