/* faultline virt prepare: a domain's XML checked and, with --apply,
 * edited so that faultline can carry it (tools/virt_xml.c does the XML). */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "core/paths.h"
#include "tools/cli.h"
#include "tools/virt.h"


/* qemu.conf's memory_backing_dir (libvirt's default if unset) */
static void backing_dir(const char *conf, char *dir, size_t len)
{
	FILE *f = fopen(conf, "re");
	char line[1024];

	snprintf(dir, len, "/var/lib/libvirt/qemu/ram");
	while (f && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t"), *q;
		if (strncmp(p, "memory_backing_dir", 18))
			continue;
		if ((p = strchr(p, '"')) && (q = strchr(p + 1, '"'))) {
			*q = 0;
			snprintf(dir, len, "%s", p + 1);
		}
	}
	if (f)
		fclose(f);
}

/* old and new XML as a unified diff on stdout (diff(1)) */
static void print_diff(const char *old, const char *new)
{
	char a[] = "/tmp/faultline-virt-XXXXXX", b[] = "/tmp/faultline-virt-XXXXXX";
	int fa = mkstemp(a), fb = mkstemp(b);

	if (fa >= 0 && fb >= 0 && write(fa, old, strlen(old)) >= 0 && write(fb, new, strlen(new)) >= 0) {
		char *argv[] = { "diff", "-u", "--label", "current", "--label", "for faultline", a, b, NULL };
		fflush(stdout);
		cli_run(argv, false);
	}
	if (fa >= 0) {
		close(fa);
		unlink(a);
	}
	if (fb >= 0) {
		close(fb);
		unlink(b);
	}
}

int virt_cmd_prepare(int argc, char **argv)
{
	const char *uri = NULL, *dom_name = NULL, *xml_file = NULL, *conf = "/etc/libvirt/qemu.conf";
	const char *run_dir = "/run/faultline";
	char shim_lib[512], dir[512], why[2048], err[256];
	bool apply = false;

	fl_path_find("../shim/libfaultline-shim.so", FL_SHIM_REL, FL_SHIM_PATH, shim_lib, sizeof(shim_lib));
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--uri") && i + 1 < argc)
			uri = argv[++i];
		else if (!strcmp(argv[i], "--apply"))
			apply = true;
		else if (!strcmp(argv[i], "--xml") && i + 1 < argc)
			xml_file = argv[++i];
		else if (!strcmp(argv[i], "--qemu-conf") && i + 1 < argc)
			conf = argv[++i];
		else if (!strcmp(argv[i], "--shim-lib") && i + 1 < argc)
			snprintf(shim_lib, sizeof(shim_lib), "%s", argv[++i]);
		else if (!strcmp(argv[i], "--run-dir") && i + 1 < argc)
			run_dir = argv[++i];
		else if (argv[i][0] != '-' && !dom_name)
			dom_name = argv[i];
		else {
			fprintf(stderr, "usage: faultline virt prepare DOMAIN [--uri URI] [--apply] [--xml FILE]\n"
					"         [--qemu-conf FILE] [--shim-lib PATH] [--run-dir DIR]\n");
			return 2;
		}
	}
	if (!dom_name && !xml_file)
		return virt_fail("prepare", "give the domain (or --xml FILE)");
	if (apply && xml_file)
		return virt_fail("prepare", "--apply edits a defined domain, not --xml FILE");
	virConnectPtr c = NULL;
	virDomainPtr dom = NULL;
	char *xml = NULL;
	int rc = 1;
	if (xml_file) {
		FILE *f = fopen(xml_file, "re");
		size_t n = 0;
		xml = calloc(1, 1 << 20);
		if (f && xml)
			n = fread(xml, 1, (1 << 20) - 1, f);
		if (f)
			fclose(f);
		if (!n) {
			fprintf(stderr, "faultline virt prepare: cannot read %s\n", xml_file);
			goto out;
		}
	} else {
		if (!(c = virConnectOpen(uri)))
			return virt_lv_fail("prepare", uri ? uri : "cannot reach libvirt here");
		if (!(dom = virDomainLookupByName(c, dom_name))) {
			fprintf(stderr, "faultline virt prepare: no domain %s here\n", dom_name);
			goto out;
		}
		xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
		if (!xml) {
			virt_lv_fail("prepare", "its XML");
			goto out;
		}
	}
	struct virt_info in;
	int refusals = virt_xml_inspect(xml, &in, why, sizeof(why));
	if (refusals) {
		fputs(why, stderr);
		goto out;
	}
	backing_dir(conf, dir, sizeof(dir));
	struct statfs sf;
	if (statfs(dir, &sf)) {
		fprintf(stderr, "faultline virt prepare: memory_backing_dir %s (%s): %s\n", dir, conf, strerror(errno));
		goto out;
	}
	if (sf.f_type != TMPFS_MAGIC && sf.f_type != HUGETLBFS_MAGIC) {
		fprintf(stderr, "faultline virt prepare: memory_backing_dir %s (%s) is no tmpfs or hugetlbfs: "
				"a shared file there cannot be registered with userfaultfd\n", dir, conf);
		goto out;
	}
	unsigned long hv = 0;	/* QEMU's version, 1000000 * major + 1000 * minor */
	struct virt_paths p = { run_dir, shim_lib, dir, c && !virConnectGetVersion(c, &hv) && hv >= 11000000 };
	char *old = virt_xml_normal(xml), *new = virt_xml_prepare(xml, &p, err, sizeof(err));
	if (!old || !new) {
		fprintf(stderr, "faultline virt prepare: %s\n", new ? "out of memory" : err);
		free(old);
		free(new);
		goto out;
	}
	if (!strcmp(old, new)) {
		printf("domain %s is prepared for faultline\n", in.name);
		rc = 0;
	} else {
		print_diff(old, new);
		if (!apply) {
			printf("domain %s is not prepared for faultline: `faultline virt prepare %s --apply` makes "
			       "the change above\n", in.name, in.name);
		} else if (snprintf(err, sizeof(err), "%s/vms", run_dir) > 0 && mkdir(run_dir, 0755) &&
			   errno != EEXIST) {
			fprintf(stderr, "faultline virt prepare: cannot create %s: %s\n", run_dir, strerror(errno));
		} else if (mkdir(err, 0700) && errno != EEXIST) {
			fprintf(stderr, "faultline virt prepare: cannot create %s: %s\n", err, strerror(errno));
		} else if (!virDomainDefineXML(c, new)) {
			virt_lv_fail("prepare", "defining the edited domain");
		} else {
			printf("domain %s defined with the change above; %s\n", in.name,
			       virDomainIsActive(dom) == 1 ? "it runs: shut it down and start it for the change to "
							   "take effect" : "it takes effect when it starts");
			rc = 0;
		}
	}
	free(old);
	free(new);
out:
	free(xml);
	if (dom)
		virDomainFree(dom);
	if (c)
		virConnectClose(c);
	return rc;
}
