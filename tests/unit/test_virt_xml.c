/* faultline virt's reading of domain XML: what is carried, what precludes
 * live migration, and the edit `virt prepare` makes (idempotent). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tools/virt.h"

static const char *plain =
	"<domain type='qemu'><name>vm1</name><memory unit='MiB'>256</memory>"
	"<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
	"<disk type='file' device='disk'><source file='/var/lib/libvirt/images/vm1.qcow2'/>"
	"<target dev='vda'/></disk></devices></domain>";
#define MON "socket,id=faultline-qmp,path=/run/faultline/vms/vm1.qmp"
static const struct virt_paths paths = { "/run/faultline", "/usr/lib/libfaultline-shim.so", "/dev/shm/lv", false };

static void test_plain_not_prepared(void **st)
{
	struct virt_info in;
	char why[1024];

	(void)st;
	assert_int_equal(virt_xml_inspect(plain, &in, why, sizeof(why)), 0);
	assert_string_equal(in.name, "vm1");
	assert_string_equal(in.arch, "x86_64");
	assert_false(in.prepared);
	assert_false(in.shared_file);
}

static void test_prepare_then_prepared(void **st)
{
	struct virt_info in;
	char why[1024], err[256];
	char *x = virt_xml_prepare(plain, &paths, err, sizeof(err));

	(void)st;
	assert_non_null(x);
	assert_int_equal(virt_xml_inspect(x, &in, why, sizeof(why)), 0);
	assert_true(in.prepared);
	assert_true(in.shared_file);
	assert_string_equal(in.qmp, "/run/faultline/vms/vm1.qmp");
	assert_string_equal(in.shim, "/run/faultline/vms/vm1.shim");
	assert_string_equal(in.shim_ram, "/dev/shm/lv/");
	assert_string_equal(in.shim_lib, "/usr/lib/libfaultline-shim.so");
	/* a second prepare changes nothing: no duplicate monitor or env */
	char *y = virt_xml_prepare(x, &paths, err, sizeof(err));
	assert_non_null(y);
	assert_string_equal(x, y);
	assert_non_null(strstr(y, "<disk"));	/* the rest is kept */
	free(x);
	free(y);
}

static void test_global_on_qemu_11(void **st)
{
	struct virt_paths p11 = paths;
	char err[256];

	(void)st;
	p11.global_ignore_shared = true;
	char *x = virt_xml_prepare(plain, &p11, err, sizeof(err));
	char *y = x ? virt_xml_prepare(x, &p11, err, sizeof(err)) : NULL;
	char *z = y ? virt_xml_prepare(y, &paths, err, sizeof(err)) : NULL;	/* back to QEMU < 11 */
	assert_non_null(z);
	assert_non_null(strstr(x, "migration.x-ignore-shared=on"));
	assert_non_null(strstr(x, MON));	/* the monitor stays */
	assert_string_equal(x, y);
	assert_null(strstr(z, "x-ignore-shared"));
	assert_non_null(strstr(z, MON));
	free(x);
	free(y);
	free(z);
}

static void test_refusals(void **st)
{
	struct virt_info in;
	char why[2048];
	const char *xml =
		"<domain type='kvm'><name>bad</name><devices>"
		"<hostdev mode='subsystem' type='pci'><source><address bus='3'/></source></hostdev>"
		"<interface type='hostdev'><source><address type='pci' bus='4'/></source></interface>"
		"<disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/></disk>"
		"<disk type='file' device='disk'><source file='/img/ro.raw'/><readonly/><target dev='vdb'/></disk>"
		"<disk type='file' device='cdrom'><target dev='hdd'/></disk>"
		"</devices></domain>";

	(void)st;
	assert_int_equal(virt_xml_inspect(xml, &in, why, sizeof(why)), 4);
	assert_non_null(strstr(why, "host device"));
	assert_non_null(strstr(why, "SR-IOV interface"));
	assert_non_null(strstr(why, "/iso/x.iso as hdc"));
	assert_non_null(strstr(why, "/img/ro.raw as vdb"));
	assert_null(strstr(why, "hdd"));	/* an empty drive moves */
}

/* Backends that map guest RAM in their own process: refused, with one
 * line that counts them. */
static void test_vhost_user(void **st)
{
	static const char *xml =
		"<domain type='kvm'><name>dpdk1</name><devices>"
		"<interface type='vhostuser'><source type='unix' path='/run/vu0' mode='client'/>"
		"<model type='virtio'/></interface>"
		"<interface type='network'><source network='default'/></interface>"
		"<disk type='vhostuser' device='disk'><source type='unix' path='/run/vblk'/>"
		"<target dev='vdb'/></disk>"
		"<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/>"
		"<source dir='/srv'/><target dir='srv'/></filesystem>"
		"<filesystem type='mount'><driver type='path'/><source dir='/x'/><target dir='x'/></filesystem>"
		"</devices></domain>";
	struct virt_info in;
	char why[1024];

	(void)st;
	assert_int_equal(virt_xml_inspect(xml, &in, why, sizeof(why)), 1);
	assert_int_equal(in.vhost_user, 3);
	assert_non_null(strstr(why, "domain dpdk1 has 3 vhost-user device(s)"));
	assert_non_null(strstr(why, "--follower"));
	assert_int_equal(virt_xml_inspect(plain, &in, why, sizeof(why)), 0);
	assert_int_equal(in.vhost_user, 0);
}

static void test_metadata_and_garbage(void **st)
{
	struct virt_info in;
	char why[1024], err[256];
	const char *xml = "<domain><name>m</name><metadata><faultline:host "
			  "xmlns:faultline='https://faultline.dev/xmlns/libvirt/1' daemon='10.0.0.1:7700'/>"
			  "<other:host xmlns:other='urn:x' daemon='evil'/></metadata></domain>";

	(void)st;
	virt_xml_inspect(xml, &in, why, sizeof(why));
	assert_string_equal(in.daemon, "10.0.0.1:7700");
	assert_int_equal(virt_xml_inspect("<domain", &in, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "does not parse"));
	assert_null(virt_xml_prepare("<notadomain/>", &paths, err, sizeof(err)));
}

static const char *numa_dom =
	"<domain type='kvm'><name>n</name><vcpu>4</vcpu>"
	"<cputune><vcpupin vcpu='0' cpuset='7'/><vcpupin vcpu='1' cpuset='7'/><emulatorpin cpuset='7'/></cputune>"
	"<numatune><memory mode='strict' nodeset='3'/><memnode cellid='0' mode='strict' nodeset='3'/></numatune>"
	"<cpu><numa><cell id='0' cpus='0-1' memory='512' unit='MiB'/><cell id='1' cpus='2,3' memory='512' "
	"unit='MiB'/></numa></cpu></domain>";
static const char *caps2 =
	"<capabilities><host><topology><cells num='2'>"
	"<cell id='0'><cpus num='2'><cpu id='0'/><cpu id='1'/></cpus></cell>"
	"<cell id='1'><cpus num='2'><cpu id='2'/><cpu id='3'/></cpus></cell>"
	"</cells></topology></host></capabilities>";

static void test_numa_plan_apply_verify(void **st)
{
	struct virt_numa p;
	char err[256], why[2048];

	(void)st;
	assert_int_equal(virt_numa_plan(numa_dom, caps2, NULL, &p, err, sizeof(err)), 0);
	assert_int_equal(p.ncells, 2);
	assert_int_equal(p.c[0].node, 0);
	assert_string_equal(p.c[0].cpuset, "0,1");
	assert_int_equal(p.c[1].node, 1);
	assert_string_equal(p.c[1].vcpus, "2,3");
	assert_string_equal(p.emulator, "0,1,2,3");
	char *x = virt_numa_apply(numa_dom, &p, err, sizeof(err));
	assert_non_null(x);
	assert_int_equal(virt_numa_verify(x, &p, why, sizeof(why)), 0);
	assert_non_null(strstr(x, "<vcpupin vcpu=\"3\" cpuset=\"2,3\"/>"));
	assert_null(strstr(x, "nodeset=\"3\""));	/* the source's binding is gone */
	/* the source as it is does not match: 4 vCPUs, 2 cells, the emulator */
	assert_int_equal(virt_numa_verify(numa_dom, &p, why, sizeof(why)), 7);
	assert_non_null(strstr(why, "vCPU 0 is pinned to '7'"));
	/* libvirt writes "0-1" for "0,1": the same set */
	const char *back = "<domain><cputune><vcpupin vcpu='0' cpuset='0-1'/><vcpupin vcpu='1' cpuset='1,0'/>"
			   "<vcpupin vcpu='2' cpuset='2-3'/><vcpupin vcpu='3' cpuset='2-3'/><emulatorpin cpuset='0-3'/>"
			   "</cputune><numatune><memnode cellid='0' nodeset='0'/><memnode cellid='1' nodeset='1'/>"
			   "</numatune></domain>";
	assert_int_equal(virt_numa_verify(back, &p, why, sizeof(why)), 0);
	free(x);
}

static void test_numa_map(void **st)
{
	struct virt_numa p;
	char err[256];

	(void)st;
	assert_int_equal(virt_numa_plan(numa_dom, caps2, "0:1,1:0", &p, err, sizeof(err)), 0);
	assert_int_equal(p.c[0].node, 1);
	assert_string_equal(p.c[0].cpuset, "2,3");
	assert_int_equal(virt_numa_plan(numa_dom, caps2, "0:5", &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no such node"));
	assert_int_equal(virt_numa_plan(numa_dom, caps2, "2:0", &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no such cell"));
	assert_int_equal(virt_numa_plan(numa_dom, caps2, "zero", &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(virt_numa_plan(plain, caps2, NULL, &p, err, sizeof(err)), 0);
	assert_int_equal(p.ncells, 0);	/* nothing pinned: nothing to keep */
	assert_int_equal(virt_numa_plan(numa_dom, "<capabilities/>", NULL, &p, err, sizeof(err)), -ENODEV);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_not_prepared),
		cmocka_unit_test(test_prepare_then_prepared),
		cmocka_unit_test(test_global_on_qemu_11),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_vhost_user),
		cmocka_unit_test(test_metadata_and_garbage),
		cmocka_unit_test(test_numa_plan_apply_verify),
		cmocka_unit_test(test_numa_map),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
