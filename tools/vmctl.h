/* The tiny control protocol guest-sim speaks (our stand-in for QMP): one
 * command line per connection on a UNIX socket, one reply line back
 * (fl_proto_line_call; the library's driver is vmm/guestsim.c).
 *   migrate HOST:PORT  stop the vCPUs for good, send device state there
 *   query              JSON status line
 *   verify             pause, check every page, JSON result, resume
 *   quit               exit */
#ifndef FL_TOOLS_VMCTL_H
#define FL_TOOLS_VMCTL_H

#include <stddef.h>

#define VMCTL_STATE_MAGIC 0x4d53534cu	/* guest-sim device state */

#endif
