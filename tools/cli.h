/* Shared pieces of the faultline CLI. */
#ifndef FL_TOOLS_CLI_H
#define FL_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline/agent.h"
#include "faultline/migrate.h"

#define DEFAULT_STATUS_DIR FL_MIGRATION_STATUS_DIR

/* cli_migrate.c: the library's controller with a progress line and a
 * summary; 0 or 1 (exit status). */
int cli_migrate(struct fl_migration_opts *o, bool json);
int cli_check(int argc, char **argv);
/* The NUMA options every migrating command takes (long options only). */
/* ... and the bandwidth caps (the destination pulls, so it paces). */
enum { CLI_OPT_NUMA_MAP = 300, CLI_OPT_GUEST_CPUS, CLI_OPT_PLACEMENT_MIN, CLI_OPT_NO_NUMA_WORKERS,
       CLI_OPT_PRECOPY_MBPS, CLI_OPT_POSTCOPY_MBPS, CLI_OPT_NO_BULK_YIELD };
#define CLI_NUMA_OPTIONS \
	{ "numa-map", 1, 0, CLI_OPT_NUMA_MAP }, { "guest-cpus", 1, 0, CLI_OPT_GUEST_CPUS }, \
	{ "placement-min", 1, 0, CLI_OPT_PLACEMENT_MIN }, { "no-numa-workers", 0, 0, CLI_OPT_NO_NUMA_WORKERS }, \
	{ "precopy-mbps", 1, 0, CLI_OPT_PRECOPY_MBPS }, { "postcopy-mbps", 1, 0, CLI_OPT_POSTCOPY_MBPS }, \
	{ "no-bulk-yield", 0, 0, CLI_OPT_NO_BULK_YIELD }
#define CLI_NUMA_USAGE \
	"         [--numa-map CELL:NODE,...] [--guest-cpus LIST] [--placement-min PCT]\n" \
	"         [--no-numa-workers] [--precopy-mbps N] [--postcopy-mbps N] [--no-bulk-yield]\n"
bool cli_numa_option(int c, const char *arg, struct fl_dest_opts *d);
/* Who may connect: the same options for either agent or both (NULL: not this one). */
enum { CLI_OPT_TLS_DIR = 320, CLI_OPT_PSK_FILE, CLI_OPT_INSECURE, CLI_OPT_NO_ENCRYPT_DATA, CLI_OPT_RECOVER_TIMEOUT };
#define CLI_LINK_OPTIONS \
	{ "tls-dir", 1, 0, CLI_OPT_TLS_DIR }, { "psk-file", 1, 0, CLI_OPT_PSK_FILE }, \
	{ "insecure", 0, 0, CLI_OPT_INSECURE }, { "no-encrypt-data", 0, 0, CLI_OPT_NO_ENCRYPT_DATA }, \
	{ "recover-timeout", 1, 0, CLI_OPT_RECOVER_TIMEOUT }
#define CLI_LINK_USAGE \
	"         [--tls-dir DIR (ca-cert.pem, server-/client-cert.pem, -key.pem) | --psk-file FILE]\n" \
	"         [--no-encrypt-data] [--insecure (tests: loopback or a network namespace)]\n" \
	"         [--recover-timeout SECONDS (post-copy waits this long for a lost link; 600; 0: fail)]\n"
bool cli_link_option(int c, const char *arg, struct fl_source_opts *s, struct fl_dest_opts *d);
int cli_demo(int argc, char **argv);
/* cli_daemon.c: this host's faultlined as the server */
int cli_vm(int argc, char **argv);
int cli_daemon_migrate(int argc, char **argv);
char *cli_daemon_state_dir(void);	/* NULL: no daemon here */
struct json_object;
/* one request, one reply within timeout_s: 0, or -errno with err */
int cli_daemon_call_timeout(struct json_object *req, struct json_object **rep, int timeout_s, char *err, size_t el);
/* a daemon's migration followed to its end (progress on stderr); the exit status */
int cli_daemon_follow(const char *mid, const char *cmd, bool json, int timeout_s, const char *action,
		      char state_out[32]);
/* cli_virt.c: faultline virt ... (libvirt) */
int cli_virt(int argc, char **argv);
/* abort / force-complete through it: 0, -ENOENT/-ECONNREFUSED (no daemon), or -errno with err */
int cli_daemon_request(const char *op, const char *id, char *answer, size_t alen, char *err, size_t el);
/* cli_status.c: status/list/show, abort, force-complete. */
int cli_status(int argc, char **argv);
int cli_operator(const char *verb, int argc, char **argv);
/* cli_plot.c: gnuplot PNGs of a migration's result (DIR/ID.result.json). */
int cli_plot_timeline(const char *dir, const char *id, const char *png);

/* cli_args.c: checked option values; a bad one prints one line naming the
 * option and what it accepts, and exits 2. */
void cli_args_command(const char *cmd);	/* the subcommand, for the messages */
long cli_int(const char *opt, const char *arg, long min, long max);
double cli_double(const char *opt, const char *arg, double min, double max);
const char *cli_addr(const char *opt, const char *arg);	/* HOST:PORT, port 1..65535 */
const char *cli_addr_uri(const char *opt, const char *arg);	/* tcp:HOST:PORT */
uint64_t cli_size(const char *opt, const char *arg, uint64_t min, uint64_t align);
const char *cli_pattern(const char *opt, const char *arg);
const char *cli_rate(const char *opt, const char *arg);
const char *cli_oneof(const char *opt, const char *arg, const char *const *words, const char *want);
/* cli_util.c. Run argv (no shell); returns exit status or -errno. */
int cli_run(char *const argv[], bool quiet);
uint64_t cli_now_ns(void);
struct json_object;
/* a number or string member of an agent's JSON report (0 / NULL if absent) */
double cli_jd(struct json_object *o, const char *k);
const char *cli_js(struct json_object *o, const char *k);

#endif
