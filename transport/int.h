/* Inside the transport module: what its files share. Not installed. */
#ifndef FL_TRANSPORT_INT_H
#define FL_TRANSPORT_INT_H

#include "faultline/error.h"

/* Record this thread's transport error (fl_transport_error); returns code. */
int tp_errorf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
