/* faultline for embedders: one include for the whole API.
 *
 * Layers, lowest first (a module uses only those below it):
 *   core     version.h error.h log.h state.h bitmap.h hist.h report.h
 *   uffd     uffd.h                the userfaultfd engine
 *   wire     proto.h               the protocol codec, framing, line calls
 *   shim     shimctl.h             the agent's end of the shim hand-off
 *   vmm      qmp.h vmm.h           QEMU's monitor; VMM drivers
 *   transport transport.h rdma.h   page transports behind one ops struct
 *   host     numa.h dirty.h        NUMA placement and preflight; dirty tracking
 *   agents   agent.h               the source and destination agents
 *   migrate  migrate.h             the controller: both agents, one result
 *
 * Link with `pkg-config --libs faultline`. */
#ifndef FAULTLINE_H
#define FAULTLINE_H

#include "faultline/version.h"
#include "faultline/error.h"
#include "faultline/log.h"
#include "faultline/state.h"
#include "faultline/bitmap.h"
#include "faultline/hist.h"
#include "faultline/report.h"
#include "faultline/uffd.h"
#include "faultline/proto.h"
#include "faultline/shimctl.h"
#include "faultline/qmp.h"
#include "faultline/vmm.h"
#include "faultline/tls.h"
#include "faultline/transport.h"
#include "faultline/rdma.h"
#include "faultline/numa.h"
#include "faultline/dirty.h"
#include "faultline/agent.h"
#include "faultline/migrate.h"

#endif
