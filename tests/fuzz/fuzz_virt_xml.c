/* libFuzzer: a libvirt domain XML as faultline reads it. The destination's
 * hook gets the incoming domain's XML from the source host (libvirt passes
 * it on stdin): inspected, and prepared and formatted as `virt prepare`
 * does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/virt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *xml = malloc(size + 1), why[2048], err[256];
	struct virt_info in;
	struct virt_paths p = { "/run/faultline", "/usr/local/lib/libfaultline-shim.so", "/dev/shm/ram" };

	if (!xml)
		return 0;
	memcpy(xml, data, size);
	xml[size] = 0;
	virt_xml_inspect(xml, &in, why, sizeof(why));
	free(virt_xml_prepare(xml, &p, err, sizeof(err)));
	free(virt_xml_normal(xml));
	free(xml);
	return 0;
}
