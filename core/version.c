/* The release this library was built as (version.h). */
#include "faultline/shimctl.h"
#include "faultline/version.h"

#define STR_(x) #x
#define STR(x) STR_(x)

const char *fl_version(void)
{
	return FL_VERSION;
}

const char *fl_version_protocols(void)
{
	return "agent protocol " STR(FL_PROTO_VERSION) ", daemon protocol " STR(FL_DAEMON_PROTO_VERSION)
	       ", shim hand-off " STR(FL_SHIM_VERSION);
}
