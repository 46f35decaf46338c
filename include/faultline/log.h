/* The library never prints: what an operator should see while a run goes
 * on (a refused peer, a fallback) goes to the embedder's callback. */
#ifndef FAULTLINE_LOG_H
#define FAULTLINE_LOG_H

enum fl_log_level { FL_LOG_ERR, FL_LOG_WARN, FL_LOG_INFO };

/* who: "source", "dest", "migrate"...; msg: one line without newline. */
typedef void (*fl_log_fn)(void *arg, enum fl_log_level level, const char *who, const char *msg);

/* Process-wide; NULL (the default) drops every message. */
void fl_log_set(fl_log_fn fn, void *arg);
void fl_log(enum fl_log_level level, const char *who, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
