/* libFuzzer: a libvirt domain XML as faultline reads it. The destination's
 * hook gets the incoming domain's XML from the source host (libvirt passes
 * it on stdin): inspected, and prepared and formatted as `virt prepare`
 * does; and the NUMA rewrite against the destination's capabilities. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/virt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *xml = malloc(size + 1), why[2048], err[256];
	struct virt_info in;
	struct virt_paths p = { "/run/faultline", "/usr/local/lib/libfaultline-shim.so", "/dev/shm/ram", false };

	if (!xml)
		return 0;
	memcpy(xml, data, size);
	xml[size] = 0;
	virt_xml_inspect(xml, &in, why, sizeof(why));
	free(virt_xml_prepare(xml, &p, err, sizeof(err)));
	free(virt_xml_normal(xml));
	/* the destination's capabilities are another host's bytes too: after
	 * the first NUL, if any */
	const char *caps = memchr(data, 0, size) ? xml + strlen(xml) + 1 : xml;
	struct virt_numa plan;
	if (!virt_numa_plan(xml, caps, NULL, &plan, err, sizeof(err)) && plan.ncells) {
		char *x = virt_numa_apply(xml, &plan, err, sizeof(err));
		if (x)
			virt_numa_verify(x, &plan, why, sizeof(why));
		free(x);
	}
	free(xml);
	return 0;
}
