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

/* destination end: the peer's announcement, readiness and go/cancel */
int dmn_virt_expect(const char *id, const char *domain, struct fl_error *err);
bool dmn_virt_ready(const char *id, bool *ready);	/* false: unknown id */
int dmn_virt_release(const char *id, bool proceed, struct fl_error *err);
bool dmn_virt_incoming(const char *id);	/* its destination QEMU is up, held */
/* the hook's question (operator socket): may return only when released */
json_object *dmn_virt_hook(struct dmn *d, json_object *req);

#endif
