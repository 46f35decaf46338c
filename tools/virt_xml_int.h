/* Inside faultline virt's XML readers (virt_xml.c, virt_numa.c): libxml2
 * with the qemu namespace as "q"; parsed without blanks so that what is
 * written back is indented as libvirt does. */
#ifndef FL_TOOLS_VIRT_XML_INT_H
#define FL_TOOLS_VIRT_XML_INT_H

#include <libxml/tree.h>
#include <libxml/xpath.h>

xmlDocPtr virt_xml_parse(const char *xml);
xmlXPathContextPtr virt_xml_context(xmlDocPtr doc);
/* NULL when nothing matches */
xmlXPathObjectPtr virt_xml_find(xmlXPathContextPtr x, const char *expr);
/* the first match's text (an attribute's value), or "" */
void virt_xml_text(xmlXPathContextPtr x, const char *expr, char *dst, size_t cap);
char *virt_xml_dump(xmlDocPtr doc);	/* malloc'd, indented */

#endif
