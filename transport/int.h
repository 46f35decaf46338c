/* Inside the transport module: what its files share. Not installed. */
#ifndef FL_TRANSPORT_INT_H
#define FL_TRANSPORT_INT_H

#include "faultline/error.h"
#include "faultline/transport.h"

#pragma GCC visibility push(hidden)

#define TP_PEER_STALL_MS 30000	/* a frame must keep arriving at least this often */

/* Record this thread's transport error (fl_transport_error); returns code. */
int tp_errorf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* tcp_serve.c: the source's side of a TCP data channel (ops.serve) */
int tp_tcp_serve(int fd, const struct fl_tsource *src, unsigned spin_us, volatile int *stop);

#pragma GCC visibility pop

#endif
