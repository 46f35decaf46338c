/* The release, and the versions of the two wire protocols it speaks.
 * One place: the build, the .pc file and debian/changelog read it here. */
#ifndef FAULTLINE_VERSION_H
#define FAULTLINE_VERSION_H

#define FL_VERSION "0.2.0"
#define FL_VERSION_MAJOR 0
#define FL_VERSION_MINOR 2
#define FL_VERSION_PATCH 0

/* Agent to agent (HELLO, proto.h) and daemon to daemon (JSON lines): a
 * peer speaking another number is refused, both numbers named. */
#define FL_PROTO_VERSION 2
#define FL_DAEMON_PROTO_VERSION 1

/* The library's own release (may differ from the header it was built against). */
const char *fl_version(void);
/* "agent protocol 2, daemon protocol 1, shim hand-off 3": for --version */
const char *fl_version_protocols(void);

#endif
