/* A small QMP client (json-c): what faultline needs from QEMU. Events that
 * arrive while a command is in flight are queued for fl_qmp_wait_event. */
#ifndef FAULTLINE_QMP_H
#define FAULTLINE_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/error.h"

struct json_object;
struct fl_qmp;

/* Connect to a QMP UNIX socket (retrying until timeout_ms while it does not
 * exist yet), read the greeting, negotiate capabilities. 0, or -errno with
 * the reason in err and *out NULL. */
int fl_qmp_connect(const char *path, int timeout_ms, struct fl_qmp **out, struct fl_error *err);
/* The same over an already connected stream fd (taken over). */
int fl_qmp_create_fd(int fd, int timeout_ms, struct fl_qmp **out, struct fl_error *err);
void fl_qmp_destroy(struct fl_qmp *q);

/* Run a command. *ret (may be NULL) gets the "return" value (caller puts
 * it). -EREMOTEIO when QEMU answers with an error (its description is in
 * fl_qmp_error), -ETIMEDOUT, -ECONNRESET, -EBADMSG on garbage. */
int fl_qmp_execute(struct fl_qmp *q, const char *cmd, struct json_object *args,
		   struct json_object **ret, int timeout_ms);
/* Wait for an event by name (queued ones first). *data may be NULL. */
int fl_qmp_wait_event(struct fl_qmp *q, const char *name, int timeout_ms, struct json_object **data);
/* The last failure of a call on q. */
const struct fl_error *fl_qmp_error(const struct fl_qmp *q);

/* Members of a reply or event, type-checked: NULL / false when absent or
 * of another type (o may be NULL or not an object). */
const char *fl_qmp_get_string(struct json_object *o, const char *key);
bool fl_qmp_get_bool(struct json_object *o, const char *key, bool *out);
bool fl_qmp_get_int(struct json_object *o, const char *key, int64_t *out);

/* Helpers over execute. */
int fl_qmp_set_capability(struct fl_qmp *q, const char *cap, bool on);
/* query-migrate "status" (e.g. "active", "completed", "failed"). */
int fl_qmp_migrate_status(struct fl_qmp *q, char *status, size_t len);

#endif
