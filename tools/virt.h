/* faultline virt: libvirt domains (virt_xml.c, virt_numa.c: their XML;
 * cli_virt*.c: the commands). */
#ifndef FL_TOOLS_VIRT_H
#define FL_TOOLS_VIRT_H

#include <stdbool.h>
#include <stddef.h>

struct virt_info {
	char name[64], arch[32];
	bool shared_file;		/* memoryBacking: source file, access shared */
	char qmp[256], shim[256], shim_lib[256], shim_ram[256];
	char daemon[160];		/* live metadata: its host's faultlined */
	bool prepared;			/* faultline can carry it */
	int vhost_user;			/* vhost-user devices (refused, see virt_xml.c) */
};
/* What the XML says; returns how many things preclude live migration,
 * one line each in why. */
int virt_xml_inspect(const char *xml, struct virt_info *in, char *why, size_t wl);

struct virt_paths {
	const char *run_dir;		/* faultline's: the shim's and monitor's sockets in vms/ */
	const char *shim_lib;
	const char *backing_dir;	/* qemu.conf's memory_backing_dir */
	bool global_ignore_shared;	/* QEMU >= 11: -global migration.x-ignore-shared=on too */
};
/* The XML edited for faultline (malloc'd), or NULL with err. */
char *virt_xml_prepare(const char *xml, const struct virt_paths *p, char *err, size_t el);
/* The XML as virt_xml_prepare formats it, unedited: for the diff. */
char *virt_xml_normal(const char *xml);

/* NUMA-aware migration (what Nova does, and checked after): each guest
 * cell's vCPUs pinned to its destination node's CPUs, its memory bound
 * there (numatune memnode), the emulator on the nodes used. */
#define VIRT_MAX_CELLS 16
struct virt_numa {
	int ncells;
	struct {
		int cell, node;
		char vcpus[128];	/* the guest's CPUs in this cell: 0-1,4 */
		char cpuset[256];	/* the node's host CPUs on the destination */
	} c[VIRT_MAX_CELLS];
	char emulator[512];
};
/* The plan from the domain XML, the destination's capabilities and
 * map ("CELL:NODE,..." or NULL: cell i on node i mod nodes). 0: a plan
 * (ncells 0: the domain is neither pinned nor NUMA-tuned), or -errno
 * with err. */
int virt_numa_plan(const char *xml, const char *caps, const char *map, struct virt_numa *p, char *err, size_t el);
/* The XML with its cputune and numatune rewritten by the plan (malloc'd). */
char *virt_numa_apply(const char *xml, const struct virt_numa *p, char *err, size_t el);
/* The destination domain's live XML against the plan: mismatches, one
 * line each in why. */
int virt_numa_verify(const char *xml, const struct virt_numa *p, char *why, size_t wl);

/* cli_virt.c: what the commands share */
struct _virError;
void virt_quiet(void *arg, struct _virError *e);	/* libvirt's errors: taken where they matter */
int virt_fail(const char *cmd, const char *what);	/* one line, 1 */
int virt_lv_fail(const char *cmd, const char *what);	/* the same with libvirt's last error */
struct _virConnect;
/* a domain's state in virsh's words ("gone" if absent); persistent: defined there */
const char *virt_dom_state(struct _virConnect *c, const char *name, bool *persistent);
const char *virt_nova_word(const char *state);	/* faultline's state as Nova says it */
int virt_cmd_prepare(int argc, char **argv);
int virt_cmd_migrate(int argc, char **argv);
int virt_cmd_drain(int argc, char **argv);

#endif
