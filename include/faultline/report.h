/* What an agent's run measured. Opaque: read through the accessors, so a
 * new counter changes no ABI (an unknown counter reads as 0). */
#ifndef FAULTLINE_REPORT_H
#define FAULTLINE_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "faultline/error.h"
#include "faultline/state.h"

struct fl_report;

enum fl_report_counter {
	FL_REPORT_TOTAL_PAGES,
	FL_REPORT_POSTCOPY_PAGES,	/* placed with data after switchover */
	FL_REPORT_ZERO_PAGES,		/* placed as zero, never sent */
	FL_REPORT_FAULT_PAGES,		/* fetched on a fault */
	FL_REPORT_FAULTS,		/* fault events handled */
	FL_REPORT_HELD_FAULTS,		/* raised before switchover */
	FL_REPORT_REMOVED_PAGES,
	FL_REPORT_CLEAN_PAGES,		/* dest: current since pre-copy */
	FL_REPORT_PRECOPY_PAGES,
	FL_REPORT_PRECOPY_BYTES,
	FL_REPORT_PRECOPY_ROUNDS,
	FL_REPORT_PUNCHED_PAGES,
	FL_REPORT_FINAL_DIRTY_PAGES,
	FL_REPORT_BYTES,		/* over the wire */
	FL_REPORT_PAGES_DONE,		/* progress */
	FL_REPORT_START_NS,		/* CLOCK_MONOTONIC */
	FL_REPORT_SWITCH_NS,
	FL_REPORT_DONE_NS,
	FL_REPORT_FOLLOWERS,
	FL_REPORT_REJECTED_PEERS,
	FL_REPORT_PLACEMENT_LOW,	/* dest: 1 when a cell is below placement_min */
	FL_REPORT__COUNT
};

/* NULL when out of memory. */
struct fl_report *fl_report_create(void);
void fl_report_destroy(struct fl_report *r);

const char *fl_report_role(const struct fl_report *r);	/* "source" | "dest" */
const char *fl_report_id(const struct fl_report *r);
enum fl_state fl_report_state(const struct fl_report *r);
/* code 0 when the run did not fail */
const struct fl_error *fl_report_error(const struct fl_report *r);
uint64_t fl_report_get(const struct fl_report *r, enum fl_report_counter c);
/* fault service latency at quantile q (0..1), microseconds: pages fetched
 * over the network, and faults on pages already here */
double fl_report_fault_us(const struct fl_report *r, double q);
double fl_report_fault_local_us(const struct fl_report *r, double q);
/* dest: the share below which placement is "low" (0..1) */
double fl_report_placement_min(const struct fl_report *r);
/* Everything, as one line of JSON; caller frees. */
char *fl_report_json(const struct fl_report *r);

#endif
