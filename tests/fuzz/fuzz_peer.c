/* libFuzzer: what one faultlined reads from another (after the TLS
 * handshake proved it, but a peer can still be wrong): a request line
 * (first byte 0 mod 3), an answer to `report` (1 mod 3), whose report is
 * bytes of another process's memory, or (2 mod 3) the first bytes of a
 * connection, read for a TLS server name before anything is proven. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/report.h"
#include "daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	const char *line = (const char *)data + 1;
	size_t len = size - 1;
	if (data[0] % 3 == 2) {
		char name[256];
		int rc = fl_tls_peek_sni((const uint8_t *)line, len, name, sizeof(name));
		if (rc == 1 && strlen(name) >= sizeof(name))
			abort();
		return 0;
	}
	if (data[0] % 3 == 0) {
		json_object *req = NULL;
		struct fl_error e = { 0 };
		if (!dmn_peer_parse(line, len, &req, &e) && !req)
			abort();	/* success means a request */
		json_object *op = req ? json_object_object_get(req, "op") : NULL;
		if (op && !strcmp(json_object_get_string(op), "start-vm")) {
			/* the command line a destination QEMU is made from (not run) */
			static struct dmn_conf c = { .run_dir = "/run/faultline", .state_dir = "/var/lib/faultline" };
			char **argv, ram[600], qmp[256];
			if (!dmn_qemu_argv(json_object_object_get(req, "argv"), "vm", &c, &argv, ram, sizeof(ram), qmp,
					   sizeof(qmp), &e))
				dmn_qemu_argv_free(argv);
		}
		json_object_put(req);
		return 0;
	}
	char *s = malloc(len + 1);
	if (!s)
		return 0;
	memcpy(s, line, len);
	s[len] = 0;
	json_object *rep = json_tokener_parse(s);
	free(s);
	if (!rep)
		return 0;
	static struct fl_report r;
	struct fl_guest_check g;
	int exit_code;
	bool running;
	int64_t now;
	if (!dmn_report_decode(rep, &r, &exit_code, &g, &running, &now)) {
		json_object *j = fl_report_object(&r);	/* everything downstream reads it */
		json_object_put(j);
	}
	json_object_put(rep);
	return 0;
}
