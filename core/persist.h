/* Inside the library: what an agent restarted mid-post-copy needs to rejoin
 * its migration, kept in a 0600 file from the switchover to COMPLETE (it
 * holds the control link's secret). Not installed. */
#ifndef FL_CORE_PERSIST_H
#define FL_CORE_PERSIST_H

#include "faultline/proto.h"
#include "faultline/tls.h"

#pragma GCC visibility push(hidden)

struct fl_persist {
	uint8_t secret[FL_TLS_SECRET_LEN];	/* the first control link's: re-attaches prove it */
	char addr[256];				/* dest: the source's address */
	struct fl_hello hello;			/* dest: the source's HELLO; source: its own */
};

/* Written whole or not at all (a temporary file renamed over path, synced
 * first): 0 or -errno. */
int fl_persist_save(const char *path, const struct fl_persist *p);
/* 0, -ENOENT (none: nothing to resume), or -EBADMSG (not ours, cut short). */
int fl_persist_load(const char *path, struct fl_persist *p);

#pragma GCC visibility pop

#endif
