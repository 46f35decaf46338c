/* faultlined: one per host. It keeps the VMs it may migrate, answers the
 * operator on a UNIX socket, and talks to the other hosts' daemons over
 * mutual TLS: a source daemon runs the controller with its source agent
 * and asks the destination's daemon to run the destination agent. */
#ifndef FL_DAEMON_H
#define FL_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "faultline/error.h"
#include "faultline/migrate.h"
#include "faultline/tls.h"
#include "faultline/version.h"
#include "faultline/vmm.h"

#define DMN_DEFAULT_CONF "/etc/faultline/faultlined.conf"
#define DMN_DEFAULT_PORT 7700
#define DMN_LINE_MAX (256 * 1024)	/* a line between daemons: a report (hex) fits */

/* conf.c: /etc/faultline/faultlined.conf (INI, read with inih) */
struct dmn_conf {
	char listen[128];		/* HOST:PORT of the daemon (default 0.0.0.0:7700) */
	int agent_port;			/* migrations' source agents (default: the daemon's + 1) */
	char state_dir[256];		/* VMs and migrations, kept across restarts (/var/lib/faultline) */
	char run_dir[256];		/* the operator socket (/run/faultline) */
	char x509_dir[256], psk_file[256];
	bool encrypt_data, insecure;
	char allow[512];		/* peers allowed to connect: addresses or a.b.c.d/n, comma-separated; empty: any proven */
	char shim_lib[256];		/* preloaded into a destination QEMU the daemon starts */
	double precopy_mbps, postcopy_mbps;
	double recover_timeout_s;	/* a lost link or agent may be waited for this long (600) */
	int log_level;			/* enum fl_log_level */
};
int dmn_conf_load(const char *path, struct dmn_conf *c, struct fl_error *err);
bool dmn_conf_allows(const struct dmn_conf *c, const char *ip);
void dmn_conf_tls(const struct dmn_conf *c, struct fl_tls_opts *o);

/* vms.c: the VMs this host may migrate or receive, state_dir/vms/NAME.json */
struct dmn_vm {
	char name[64];
	char kind[16];			/* guest-sim | qemu */
	char ctl[256], qmp[256], shim[256];
	char uri[128];			/* an incoming VM: where its device state goes */
};
int dmn_vm_from_json(json_object *j, struct dmn_vm *vm, struct fl_error *err);
json_object *dmn_vm_to_json(const struct dmn_vm *vm);
int dmn_vm_add(const struct dmn_conf *c, const struct dmn_vm *vm, struct fl_error *err);
int dmn_vm_get(const struct dmn_conf *c, const char *name, struct dmn_vm *vm, struct fl_error *err);
json_object *dmn_vm_list(const struct dmn_conf *c);

/* qemu_argv.c: a destination QEMU from the source's command line */
int dmn_qemu_argv(json_object *src, const char *name, const struct dmn_conf *c, char ***out,
		  char *ram_dir, size_t rdlen, char *qmp, size_t qlen, struct fl_error *err);
void dmn_qemu_argv_free(char **argv);
/* start it, wait for its sockets, register it as NAME (its device state on
 * ip, a free port); 0 or -errno + err */
int dmn_qemu_start(const struct dmn_conf *c, const char *name, json_object *src_argv, const char *ip,
		   struct dmn_vm *vm, struct fl_error *err);

/* mig.c: migrations this daemon runs (either end) */
struct dmn;
int dmn_mig_start_source(struct dmn *d, json_object *req, char *id, size_t idlen, struct fl_error *err);
int dmn_mig_start_dest(struct dmn *d, json_object *req, json_object **reply, struct fl_error *err);
json_object *dmn_mig_report(struct dmn *d, const char *id);
json_object *dmn_mig_progress(struct dmn *d, const char *id);
bool dmn_mig_source_daemon(struct dmn *d, const char *id, char *addr, size_t len);
json_object *dmn_mig_vm(struct dmn *d, const char *id, bool quit);
bool dmn_mig_in_postcopy(struct dmn *d);
/* at start: incoming migrations a killed daemon left in post-copy are
 * taken back (their orphaned agents ended, new ones take over); count */
int dmn_mig_adopt(struct dmn *d);
void dmn_mig_abort_all(struct dmn *d);
void dmn_mig_wait_all(struct dmn *d);

/* peer.c: daemon to daemon, one JSON line each way over mutual TLS */
int dmn_peer_call(struct dmn *d, const char *addr, json_object *req, json_object **reply,
		  char *local_ip, size_t iplen, struct fl_error *err);
/* a request line from a peer: its op and fields checked; 0 or -EINVAL + err */
int dmn_peer_parse(const char *line, size_t len, json_object **req, struct fl_error *err);
/* A request's or reply's daemon protocol: 0, or -EPROTONOSUPPORT naming both
 * sides' protocols and releases; stamp adds ours. */
int dmn_peer_version(json_object *j, const char *what, struct fl_error *err);
void dmn_peer_stamp(json_object *j);
/* a peer's answer to report: the destination agent's report (same build:
 * its size must match), its exit, the guest's self-check; 0 or -EPROTO */
struct fl_report;
int dmn_report_decode(json_object *rep, struct fl_report *r, int *exit_code, struct fl_guest_check *g,
		      bool *running, int64_t *remote_now);

/* serve.c: answering other daemons */
void dmn_peer_accepted(struct dmn *d, int fd);

/* api.c: the operator's UNIX socket */
int dmn_api_listen(struct dmn *d, struct fl_error *err);
void dmn_api_accepted(struct dmn *d, int fd);

struct dmn_mig;
struct dmn {
	struct dmn_conf c;
	struct fl_tls *tls;		/* NULL: insecure (tests) */
	int lfd, afd;			/* peer port, operator socket */
	pthread_mutex_t lock;
	struct dmn_mig *migs;
	volatile int stop;
};

/* One connection served by its own detached thread: fn gets a malloc'd
 * struct dmn_conn it frees; the fd is closed here when no thread starts. */
struct dmn_conn {
	struct dmn *d;
	int fd;
};
int dmn_conn_thread(struct dmn *d, int fd, void *(*fn)(void *));

/* line I/O with a deadline, for both sockets */
int dmn_read_line(int fd, char *buf, size_t cap, int timeout_ms);
int dmn_write_json(int fd, json_object *j);

#endif
