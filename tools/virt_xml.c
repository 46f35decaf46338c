/* A libvirt domain's XML as faultline sees it: whether faultline can carry
 * it (RAM in a shared file, the shim and its own monitor in
 * qemu:commandline), what precludes live migration, and the edit that
 * prepares it. libxml2, as libvirt itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/virt.h"
#include "tools/virt_xml_int.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define MON_ID "faultline-qmp"
#define META_NS "https://faultline.dev/xmlns/libvirt/1"

xmlDocPtr virt_xml_parse(const char *xml)
{
	return xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS);
}

xmlXPathObjectPtr virt_xml_find(xmlXPathContextPtr x, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, x);

	if (o && (!o->nodesetval || !o->nodesetval->nodeNr)) {
		xmlXPathFreeObject(o);
		return NULL;
	}
	return o;
}

static int count(xmlXPathContextPtr x, const char *expr)
{
	xmlXPathObjectPtr o = virt_xml_find(x, expr);
	int n = o ? o->nodesetval->nodeNr : 0;

	xmlXPathFreeObject(o);
	return n;
}

/* the first match's text (an attribute's value), or "" */
void virt_xml_text(xmlXPathContextPtr x, const char *expr, char *dst, size_t cap)
{
	xmlXPathObjectPtr o = virt_xml_find(x, expr);
	xmlChar *s = o ? xmlNodeGetContent(o->nodesetval->nodeTab[0]) : NULL;

	snprintf(dst, cap, "%s", s ? (const char *)s : "");
	xmlFree(s);
	xmlXPathFreeObject(o);
}

static void add(char *why, size_t wl, int *n, const char *fmt, const char *a, const char *b)
{
	size_t len = strlen(why);

	if (len + 2 < wl)
		snprintf(why + len, wl - len, fmt, a, b);
	(*n)++;
}

xmlXPathContextPtr virt_xml_context(xmlDocPtr doc)
{
	xmlXPathContextPtr x = xmlXPathNewContext(doc);

	if (x)
		xmlXPathRegisterNs(x, (const xmlChar *)"q", (const xmlChar *)QEMU_NS);
	return x;
}

int virt_xml_inspect(const char *xml, struct virt_info *in, char *why, size_t wl)
{
	xmlDocPtr doc = virt_xml_parse(xml);
	xmlXPathContextPtr x = doc ? virt_xml_context(doc) : NULL;
	int n = 0;
	char a[512], b[512];

	memset(in, 0, sizeof(*in));
	why[0] = 0;
	if (!x) {
		xmlFreeDoc(doc);
		snprintf(why, wl, "the domain XML does not parse\n");
		return 1;
	}
	virt_xml_text(x, "/domain/name", in->name, sizeof(in->name));
	virt_xml_text(x, "/domain/os/type/@arch", in->arch, sizeof(in->arch));
	in->shared_file = count(x, "/domain/memoryBacking/source[@type='file']") &&
			  count(x, "/domain/memoryBacking/access[@mode='shared']");
	virt_xml_text(x, "/domain/q:commandline/q:env[@name='FAULTLINE_SHIM_SOCK']/@value", in->shim, sizeof(in->shim));
	virt_xml_text(x, "/domain/q:commandline/q:env[@name='FAULTLINE_SHIM_RAM']/@value", in->shim_ram, sizeof(in->shim_ram));
	virt_xml_text(x, "/domain/q:commandline/q:env[@name='LD_PRELOAD']/@value", in->shim_lib, sizeof(in->shim_lib));
	virt_xml_text(x, "/domain/q:commandline/q:arg[starts-with(@value,'socket,id=" MON_ID ",')]/@value", a, sizeof(a));
	virt_xml_text(x, "/domain/metadata/*[local-name()='host' and namespace-uri()='" META_NS "']/@daemon", in->daemon,
	     sizeof(in->daemon));
	char *p = strstr(a, ",path=");
	if (p) {
		snprintf(in->qmp, sizeof(in->qmp), "%s", p + 6);
		in->qmp[strcspn(in->qmp, ",")] = 0;
	}
	in->prepared = in->shared_file && in->shim[0] && in->qmp[0] && strstr(in->shim_lib, "libfaultline-shim");
	in->vhost_user = count(x, "/domain/devices/interface[@type='vhostuser']") +
			 count(x, "/domain/devices/disk[@type='vhostuser']") +
			 count(x, "/domain/devices/filesystem[driver/@type='virtiofs']") +
			 count(x, "/domain/devices/video[driver/@name='vhostuser']");
	/* what precludes live migration, as Nova refuses it */
	if (count(x, "/domain/devices/hostdev"))
		add(why, wl, &n, "domain %s has a host device (PCI passthrough, SR-IOV or USB hostdev): it cannot "
		    "be live-migrated%s\n", in->name, "");
	if (count(x, "/domain/devices/interface[@type='hostdev']"))
		add(why, wl, &n, "domain %s has an SR-IOV interface (type hostdev): it cannot be live-migrated%s\n",
		    in->name, "");
	xmlXPathObjectPtr o = virt_xml_find(x, "/domain/devices/disk[(@device='cdrom' or @device='floppy' or readonly)"
				      " and source/@file]");
	for (int i = 0; o && i < o->nodesetval->nodeNr; i++) {
		x->node = o->nodesetval->nodeTab[i];
		virt_xml_text(x, "source/@file", a, sizeof(a));
		virt_xml_text(x, "target/@dev", b, sizeof(b));
		add(why, wl, &n, "a read-only medium on local storage (%s as %s): eject or detach it first\n", a, b);
	}
	xmlXPathFreeObject(o);
	/* A vhost-user backend (DPDK, qemu-storage-daemon, virtiofsd) maps the
	 * guest's RAM in its own process. On the destination it would read
	 * pages faultline has not placed yet unless it runs with the shim and
	 * is served as a follower, which only `faultline qemu migrate
	 * --follower` sets up; on the source its writes escape the dirty
	 * tracking (QEMU's page tables). */
	snprintf(a, sizeof(a), "%d", in->vhost_user);
	if (in->vhost_user)
		add(why, wl, &n, "domain %s has %s vhost-user device(s) (DPDK interface, vhost-user disk, virtiofs "
		    "or GPU): their backends map its RAM in their own processes, which faultline's libvirt path "
		    "does not serve (faultline qemu migrate --follower does)\n", in->name, a);
	if (count(x, "/domain/memoryBacking/source[@type='memfd' or @type='anonymous']"))
		add(why, wl, &n, "domain %s keeps its RAM in %s memory: faultline needs a shared file "
		    "(faultline virt prepare)\n", in->name, "anonymous or memfd");
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	return n;
}

/* the element named (in ns, if given) under parent, created if absent */
static xmlNodePtr child(xmlNodePtr parent, const char *name, xmlNsPtr ns)
{
	for (xmlNodePtr c = parent->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name) &&
		    (!ns || (c->ns && !strcmp((const char *)c->ns->href, QEMU_NS))))
			return c;
	return xmlNewChild(parent, ns, (const xmlChar *)name, NULL);
}

static void drop_ours(xmlNodePtr cmd)
{
	xmlNodePtr c = cmd->children, next;
	bool skip_next = false;

	for (; c; c = next) {
		next = c->next;
		if (c->type != XML_ELEMENT_NODE)
			continue;
		xmlChar *v = xmlGetProp(c, (const xmlChar *)"value"), *nm = xmlGetProp(c, (const xmlChar *)"name");
		bool ours = skip_next;
		skip_next = false;
		if (!strcmp((const char *)c->name, "arg") && v) {
			/* -chardev socket,id=faultline-qmp,... and -mon chardev=faultline-qmp,... with their flags */
			if ((!strcmp((const char *)v, "-chardev") || !strcmp((const char *)v, "-mon") ||
			     !strcmp((const char *)v, "-global")) && next) {
				xmlNodePtr n2 = next;
				while (n2 && n2->type != XML_ELEMENT_NODE)
					n2 = n2->next;
				xmlChar *v2 = n2 ? xmlGetProp(n2, (const xmlChar *)"value") : NULL;
				if (v2 && (strstr((const char *)v2, MON_ID) ||
					   !strcmp((const char *)v2, "migration.x-ignore-shared=on")))
					ours = skip_next = true;
				xmlFree(v2);
			}
		} else if (!strcmp((const char *)c->name, "env") && nm &&
			   (!strncmp((const char *)nm, "FAULTLINE_SHIM_", 15) ||
			    (!strcmp((const char *)nm, "LD_PRELOAD") && v && strstr((const char *)v, "libfaultline-shim")))) {
			ours = true;
		}
		xmlFree(v);
		xmlFree(nm);
		if (ours) {
			xmlUnlinkNode(c);
			xmlFreeNode(c);
		}
	}
}

static void arg(xmlNodePtr cmd, xmlNsPtr ns, const char *v)
{
	xmlNodePtr a = xmlNewChild(cmd, ns, (const xmlChar *)"arg", NULL);

	xmlNewProp(a, (const xmlChar *)"value", (const xmlChar *)v);
}

static void env(xmlNodePtr cmd, xmlNsPtr ns, const char *k, const char *v)
{
	xmlNodePtr e = xmlNewChild(cmd, ns, (const xmlChar *)"env", NULL);

	xmlNewProp(e, (const xmlChar *)"name", (const xmlChar *)k);
	xmlNewProp(e, (const xmlChar *)"value", (const xmlChar *)v);
}

char *virt_xml_prepare(const char *xml, const struct virt_paths *p, char *err, size_t el)
{
	xmlDocPtr doc = virt_xml_parse(xml);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	xmlChar *out = NULL;
	int len = 0;
	char name[64] = "", buf[600];

	if (!root || strcmp((const char *)root->name, "domain")) {
		snprintf(err, el, "the domain XML does not parse");
		xmlFreeDoc(doc);
		return NULL;
	}
	for (xmlNodePtr c = root->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "name")) {
			xmlChar *s = xmlNodeGetContent(c);
			snprintf(name, sizeof(name), "%s", s ? (const char *)s : "");
			xmlFree(s);
		}
	xmlNsPtr ns = xmlSearchNsByHref(doc, root, (const xmlChar *)QEMU_NS);
	if (!ns)
		ns = xmlNewNs(root, (const xmlChar *)QEMU_NS, (const xmlChar *)"qemu");
	/* RAM in a shared file under memory_backing_dir */
	xmlNodePtr mb = child(root, "memoryBacking", NULL);
	xmlNodePtr src = child(mb, "source", NULL), acc = child(mb, "access", NULL);
	xmlSetProp(src, (const xmlChar *)"type", (const xmlChar *)"file");
	xmlSetProp(acc, (const xmlChar *)"mode", (const xmlChar *)"shared");
	/* the shim and faultline's own monitor (QEMU < 11 has no -global for x-ignore-shared) */
	xmlNodePtr cmd = child(root, "commandline", ns);
	drop_ours(cmd);
	arg(cmd, ns, "-chardev");
	snprintf(buf, sizeof(buf), "socket,id=" MON_ID ",path=%s/vms/%s.qmp,server=on,wait=off", p->run_dir, name);
	arg(cmd, ns, buf);
	arg(cmd, ns, "-mon");
	arg(cmd, ns, "chardev=" MON_ID ",mode=control");
	if (p->global_ignore_shared) {	/* the monitor stays: the source's STOP is seen there */
		arg(cmd, ns, "-global");
		arg(cmd, ns, "migration.x-ignore-shared=on");
	}
	env(cmd, ns, "LD_PRELOAD", p->shim_lib);
	snprintf(buf, sizeof(buf), "%s/", p->backing_dir);
	env(cmd, ns, "FAULTLINE_SHIM_RAM", buf);
	snprintf(buf, sizeof(buf), "%s/vms/%s.shim", p->run_dir, name);
	env(cmd, ns, "FAULTLINE_SHIM_SOCK", buf);
	xmlDocDumpFormatMemory(doc, &out, &len, 1);
	xmlFreeDoc(doc);
	char *r = out ? strndup((const char *)out, (size_t)len) : NULL;
	xmlFree(out);
	if (!r)
		snprintf(err, el, "out of memory");
	return r;
}

char *virt_xml_dump(xmlDocPtr doc)
{
	xmlChar *out = NULL;
	int len = 0;

	xmlDocDumpFormatMemory(doc, &out, &len, 1);
	char *r = out ? strndup((const char *)out, (size_t)len) : NULL;
	xmlFree(out);
	return r;
}

char *virt_xml_normal(const char *xml)
{
	xmlDocPtr doc = virt_xml_parse(xml);
	xmlChar *out = NULL;
	int len = 0;

	if (doc)
		xmlDocDumpFormatMemory(doc, &out, &len, 1);
	xmlFreeDoc(doc);
	char *r = out ? strndup((const char *)out, (size_t)len) : NULL;
	xmlFree(out);
	return r;
}
