/* NUMA-aware libvirt migration: the destination XML gets each guest
 * cell's vCPUs pinned to its destination node's CPUs, the cell's memory
 * bound to that node (numatune memnode) and the emulator on the nodes
 * used, as Nova's NUMA-aware live migration rewrites them; unlike Nova,
 * the destination domain is read back and checked against the plan. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/virt.h"
#include "tools/virt_xml_int.h"

/* the host's NUMA cells from capabilities: node id -> "cpu,cpu,..." */
static int host_nodes(const char *caps, int *ids, char (*cpus)[256], int max)
{
	xmlDocPtr doc = virt_xml_parse(caps);
	xmlXPathContextPtr x = doc ? virt_xml_context(doc) : NULL;
	xmlXPathObjectPtr o = x ? virt_xml_find(x, "/capabilities/host/topology/cells/cell") : NULL;
	int n = 0;

	for (int i = 0; o && i < o->nodesetval->nodeNr && n < max; i++) {
		char id[16];
		x->node = o->nodesetval->nodeTab[i];
		virt_xml_text(x, "@id", id, sizeof(id));
		ids[n] = atoi(id);
		cpus[n][0] = 0;
		xmlXPathObjectPtr c = virt_xml_find(x, "cpus/cpu/@id");
		for (int k = 0; c && k < c->nodesetval->nodeNr; k++) {
			xmlChar *v = xmlNodeGetContent(c->nodesetval->nodeTab[k]);
			size_t len = strlen(cpus[n]);
			snprintf(cpus[n] + len, 256 - len, "%s%s", len ? "," : "", v ? (const char *)v : "");
			xmlFree(v);
		}
		xmlXPathFreeObject(c);
		n++;
	}
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	return n;
}

static int node_index(const int *ids, int n, int node)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == node)
			return i;
	return -1;
}

int virt_numa_plan(const char *xml, const char *caps, const char *map, struct virt_numa *p, char *err, size_t el)
{
	int ids[64], nn = caps ? 0 : -1;
	char cpus[64][256];
	xmlDocPtr doc = virt_xml_parse(xml);
	xmlXPathContextPtr x = doc ? virt_xml_context(doc) : NULL;
	int rc = 0;

	memset(p, 0, sizeof(*p));
	if (!x) {
		snprintf(err, el, "the domain XML does not parse");
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	xmlXPathObjectPtr pin = virt_xml_find(x, "/domain/cputune/vcpupin | /domain/numatune/memnode"
						 " | /domain/cputune/emulatorpin");
	xmlXPathObjectPtr cells = virt_xml_find(x, "/domain/cpu/numa/cell");
	if (!pin && !cells)
		goto out;	/* neither pinned nor NUMA-tuned: nothing to keep */
	if (caps)
		nn = host_nodes(caps, ids, cpus, 64);
	if (nn <= 0) {
		snprintf(err, el, "the destination reports no NUMA topology");
		rc = -ENODEV;
		goto out;
	}
	if (cells) {
		for (int i = 0; i < cells->nodesetval->nodeNr && p->ncells < VIRT_MAX_CELLS; i++) {
			char id[16];
			x->node = cells->nodesetval->nodeTab[i];
			virt_xml_text(x, "@id", id, sizeof(id));
			p->c[p->ncells].cell = atoi(id);
			virt_xml_text(x, "@cpus", p->c[p->ncells].vcpus, sizeof(p->c[0].vcpus));
			p->ncells++;
		}
	} else {	/* one cell: every vCPU */
		char n[16];
		virt_xml_text(x, "/domain/vcpu", n, sizeof(n));
		p->ncells = 1;
		snprintf(p->c[0].vcpus, sizeof(p->c[0].vcpus), "0-%d", atoi(n) > 0 ? atoi(n) - 1 : 0);
	}
	for (int i = 0; i < p->ncells; i++)
		p->c[i].node = ids[i % nn];	/* the same shape, node by node */
	for (const char *m = map; m && *m && !rc;) {
		int cell, node, k;
		if (sscanf(m, "%d:%d%n", &cell, &node, &k) != 2) {
			snprintf(err, el, "--numa-map: '%s' is not CELL:NODE,...", map);
			rc = -EINVAL;
			break;
		}
		int ci = -1;
		for (int i = 0; i < p->ncells; i++)
			if (p->c[i].cell == cell)
				ci = i;
		if (ci < 0 || node_index(ids, nn, node) < 0) {
			snprintf(err, el, "--numa-map %d:%d: %s", cell, node,
				 ci < 0 ? "the guest has no such cell" : "the destination has no such node");
			rc = -EINVAL;
			break;
		}
		p->c[ci].node = node;
		m += k;
		m += *m == ',';
	}
	for (int i = 0; i < p->ncells && !rc; i++) {
		snprintf(p->c[i].cpuset, sizeof(p->c[i].cpuset), "%s", cpus[node_index(ids, nn, p->c[i].node)]);
		if (!strstr(p->emulator, p->c[i].cpuset)) {	/* the union, node by node */
			size_t len = strlen(p->emulator);
			snprintf(p->emulator + len, sizeof(p->emulator) - len, "%s%s", len ? "," : "", p->c[i].cpuset);
		}
	}
out:
	xmlXPathFreeObject(pin);
	xmlXPathFreeObject(cells);
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	if (rc)
		p->ncells = 0;
	return rc;
}

/* "0-2,5" one by one */
struct ids {
	const char *pos;
	int cur, hi;
};

static int next_id(struct ids *it)
{
	if (it->cur < it->hi)
		return ++it->cur;
	while (*it->pos == ',')
		it->pos++;
	if (!*it->pos)
		return -1;
	char *end;
	long lo = strtol(it->pos, &end, 10), hi = *end == '-' ? strtol(end + 1, &end, 10) : lo;
	if (end == it->pos || lo < 0 || hi < lo || hi > 4095)
		return -1;	/* not a list of CPUs: the rest is ignored */
	it->pos = end;
	it->cur = (int)lo;
	it->hi = (int)hi;
	return it->cur;
}

static xmlNodePtr element(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr c = parent->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
			return c;
	return xmlNewChild(parent, NULL, (const xmlChar *)name, NULL);
}

static void drop_children(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr c = parent->children, next; c; c = next) {
		next = c->next;
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name)) {
			xmlUnlinkNode(c);
			xmlFreeNode(c);
		}
	}
}

char *virt_numa_apply(const char *xml, const struct virt_numa *p, char *err, size_t el)
{
	xmlDocPtr doc = virt_xml_parse(xml);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	char buf[32];

	if (!root) {
		snprintf(err, el, "the domain XML does not parse");
		xmlFreeDoc(doc);
		return NULL;
	}
	xmlNodePtr ct = element(root, "cputune"), nt = element(root, "numatune");
	drop_children(ct, "vcpupin");
	drop_children(ct, "emulatorpin");
	drop_children(nt, "memnode");
	drop_children(nt, "memory");	/* per cell now */
	for (int i = 0; i < p->ncells; i++) {
		struct ids it = { p->c[i].vcpus, 0, 0 };
		for (int v; (v = next_id(&it)) >= 0;) {
			xmlNodePtr n = xmlNewChild(ct, NULL, (const xmlChar *)"vcpupin", NULL);
			snprintf(buf, sizeof(buf), "%d", v);
			xmlNewProp(n, (const xmlChar *)"vcpu", (const xmlChar *)buf);
			xmlNewProp(n, (const xmlChar *)"cpuset", (const xmlChar *)p->c[i].cpuset);
		}
		xmlNodePtr m = xmlNewChild(nt, NULL, (const xmlChar *)"memnode", NULL);
		snprintf(buf, sizeof(buf), "%d", p->c[i].cell);
		xmlNewProp(m, (const xmlChar *)"cellid", (const xmlChar *)buf);
		xmlNewProp(m, (const xmlChar *)"mode", (const xmlChar *)"strict");
		snprintf(buf, sizeof(buf), "%d", p->c[i].node);
		xmlNewProp(m, (const xmlChar *)"nodeset", (const xmlChar *)buf);
	}
	xmlNodePtr e = xmlNewChild(ct, NULL, (const xmlChar *)"emulatorpin", NULL);
	xmlNewProp(e, (const xmlChar *)"cpuset", (const xmlChar *)p->emulator);
	char *r = virt_xml_dump(doc);
	xmlFreeDoc(doc);
	if (!r)
		snprintf(err, el, "out of memory");
	return r;
}

/* the same CPUs, however libvirt writes the set ("0-1" for "0,1") */
static bool same_set(const char *a, const char *b)
{
	char seen[2][1024] = { { 0 } };
	const char *s[2] = { a, b };

	for (int k = 0; k < 2; k++) {
		struct ids it = { s[k], 0, 0 };
		for (int v; (v = next_id(&it)) >= 0;)
			if (v < 1024)
				seen[k][v] = 1;
	}
	return !memcmp(seen[0], seen[1], sizeof(seen[0]));
}

int virt_numa_verify(const char *xml, const struct virt_numa *p, char *why, size_t wl)
{
	xmlDocPtr doc = virt_xml_parse(xml);
	xmlXPathContextPtr x = doc ? virt_xml_context(doc) : NULL;
	int bad = 0;
	char q[160], got[256];

	why[0] = 0;
	if (!x) {
		snprintf(why, wl, "the destination's domain XML does not parse\n");
		xmlFreeDoc(doc);
		return 1;
	}
#define MISMATCH(...) do { size_t l_ = strlen(why); snprintf(why + l_, wl - l_, __VA_ARGS__); bad++; } while (0)
	for (int i = 0; i < p->ncells; i++) {
		struct ids it = { p->c[i].vcpus, 0, 0 };
		for (int v; (v = next_id(&it)) >= 0;) {
			snprintf(q, sizeof(q), "/domain/cputune/vcpupin[@vcpu='%d']/@cpuset", v);
			virt_xml_text(x, q, got, sizeof(got));
			if (!same_set(got, p->c[i].cpuset))
				MISMATCH("vCPU %d is pinned to '%s' on the destination, not node %d's CPUs %s\n", v, got,
					 p->c[i].node, p->c[i].cpuset);
		}
		snprintf(q, sizeof(q), "/domain/numatune/memnode[@cellid='%d']/@nodeset", p->c[i].cell);
		virt_xml_text(x, q, got, sizeof(got));
		if (atoi(got) != p->c[i].node || !got[0])
			MISMATCH("guest cell %d's memory is bound to '%s' on the destination, not node %d\n", p->c[i].cell,
				 got, p->c[i].node);
	}
	virt_xml_text(x, "/domain/cputune/emulatorpin/@cpuset", got, sizeof(got));
	if (p->ncells && !same_set(got, p->emulator))
		MISMATCH("the emulator is pinned to '%s', not %s\n", got, p->emulator);
#undef MISMATCH
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	return bad;
}
