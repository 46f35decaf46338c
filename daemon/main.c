/* faultlined: the configuration, the two listeners, and the rules for
 * stopping (SIGTERM aborts what is still in pre-copy, the guest staying on
 * its source; during post-copy it refuses, unless told twice in 10 s). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "faultline/log.h"
#include "faultline/transport.h"
#include "core/util.h"
#include "daemon.h"

static int log_level = FL_LOG_INFO;

static void log_stderr(void *arg, enum fl_log_level lv, const char *who, const char *msg)
{
	static const char *const pfx[] = { "<3>", "<4>", "<6>", "<7>" };	/* journald levels */

	(void)arg;
	if ((int)lv <= log_level)
		fprintf(stderr, "%s%s: %s\n", pfx[lv < 4 ? lv : 3], who, msg);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "config", 1, 0, 'c' }, { "help", 0, 0, 'h' },
					    { "version", 0, 0, 'V' }, { 0 } };
	const char *conf = DMN_DEFAULT_CONF;
	struct dmn d = { .lfd = -1, .afd = -1 };
	struct fl_error e = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "c:hV", lo, NULL)) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case 'V':
			printf("faultlined %s\n%s (library %s)\n", FL_VERSION, fl_version_protocols(), fl_version());
			return 0;
		case 'h':
			printf("usage: faultlined [--config FILE (default %s)] [--version]\n"
			       "The faultline daemon: migrates this host's registered VMs to other hosts'\n"
			       "daemons and receives theirs. See faultlined(8), faultlined.conf(5).\n", DMN_DEFAULT_CONF);
			return 0;
		default:
			fprintf(stderr, "faultlined: unknown option (see --help)\n");
			return 2;
		}
	}
	setvbuf(stderr, NULL, _IOLBF, 0);
	fl_log_set(log_stderr, NULL);
	if (dmn_conf_load(conf, &d.c, &e)) {
		fprintf(stderr, "faultlined: %s\n", e.text);
		return 1;
	}
	log_level = d.c.log_level;
	struct fl_tls_opts to;
	dmn_conf_tls(&d.c, &to);
	if (!to.x509_dir && !to.psk_file && !d.c.insecure) {
		fprintf(stderr, "faultlined: no credentials in %s: set x509_dir or psk_file in [tls] "
			"(insecure = true is for tests on loopback or in a network namespace only)\n", conf);
		return 1;
	}
	if (fl_tls_setup(&to, d.c.insecure, d.c.listen, &d.tls, &e)) {
		fprintf(stderr, "faultlined: %s (in %s, [tls])\n", e.text, conf);
		return 1;
	}
	pthread_mutex_init(&d.lock, NULL);
	d.lfd = fl_transport_tcp_listen(d.c.listen, 64);
	if (d.lfd < 0) {
		fprintf(stderr, "faultlined: %s\n", fl_error_text(fl_transport_error()));
		return 1;
	}
	if (dmn_api_listen(&d, &e)) {
		fprintf(stderr, "faultlined: %s\n", e.text);
		return 1;
	}
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);	/* before any thread: they inherit it */
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
	fl_log(FL_LOG_INFO, "faultlined", "listening on %s (peers) and %s/faultlined.sock (operators); "
	       "migrations' agents on port %d; state in %s", d.c.listen, d.c.run_dir, d.c.agent_port, d.c.state_dir);
	dmn_mig_adopt(&d);
	sd_notify(0, "READY=1");
	uint64_t refused_at = 0;
	for (;;) {
		struct pollfd p[3] = { { d.lfd, POLLIN, 0 }, { d.afd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		if (poll(p, 3, 1000) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			int fd = fl_transport_tcp_accept(d.lfd, 0);
			if (fd >= 0)
				dmn_peer_accepted(&d, fd);
		}
		if (p[1].revents & POLLIN) {
			int fd = accept4(d.afd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				dmn_api_accepted(&d, fd);
		}
		if (!(p[2].revents & POLLIN))
			continue;
		struct signalfd_siginfo si;
		(void)!read(sfd, &si, sizeof(si));
		bool forced = refused_at && fl_now_ns() - refused_at < 10000000000ull;
		if (dmn_mig_in_postcopy(&d) && !forced) {
			fl_log(FL_LOG_WARN, "faultlined", "not stopping: a migration is in post-copy and its guest "
			       "needs this host; send the signal again within 10 s to stop anyway");
			refused_at = fl_now_ns();
			continue;
		}
		sd_notify(0, "STOPPING=1");
		fl_log(FL_LOG_INFO, "faultlined", "stopping: migrations still in pre-copy are cancelled (their "
		       "VMs stay on their sources)");
		dmn_mig_abort_all(&d);
		d.stop = 1;
		if (!forced)
			dmn_mig_wait_all(&d);
		break;
	}
	close(d.lfd);
	close(d.afd);
	fl_tls_destroy(d.tls);
	return 0;
}
