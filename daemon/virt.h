/* Inside the daemon: libvirt-driven migrations (virt_out.c: the source
 * end, libvirt's call as the QEMU driver's manager; virt_in.c: the
 * destination end, libvirt's hook held until pre-copy is done). */
#ifndef FL_DAEMON_VIRT_H
#define FL_DAEMON_VIRT_H

#include <stdbool.h>

#include "faultline/vmm.h"
#include "daemon.h"

struct dmn_mig;
struct virt_out;

/* source end: lv is the operator's "libvirt" object (dest_uri,
 * migrate_uri, persistent, undefine_source, copy_storage, bandwidth) */
int dmn_virt_out_create(struct dmn_mig *g, json_object *lv, struct virt_out **out,
			struct fl_vmm_manager *mgr, struct fl_error *err);
void dmn_virt_out_destroy(struct virt_out *v);
/* A plain libvirt migration of a faultline domain, seen by the
 * destination's hook: its daemon (at who, port) asks us to carry the RAM
 * as pure post-copy; we announce it there (virt-expect), in the
 * background. */
int dmn_virt_pull(struct dmn *d, const char *vm, const char *who, const char *port, struct fl_error *err);
/* The running domain's live metadata names this daemon (the destination
 * of a plain libvirt migration asks it); in the background, retried while
 * libvirt holds the domain's job. */
void dmn_virt_advertise(struct dmn *d, const char *domain);

/* destination end: the peer's announcement, readiness and go/cancel */
int dmn_virt_expect(const char *id, const char *domain, struct fl_error *err);
bool dmn_virt_ready(const char *id, bool *ready);	/* false: unknown id */
int dmn_virt_release(const char *id, bool proceed, struct fl_error *err);
bool dmn_virt_incoming(const char *id);	/* its destination QEMU is up, held */
/* the hook's question (operator socket): may return only when released */
json_object *dmn_virt_hook(struct dmn *d, json_object *req);

#endif
