/* faultline virt drain: every running domain off a host, N at a time,
 * each by `faultline virt migrate` (children of ours), and a summary. */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/cli.h"
#include "tools/virt.h"

/* Every running faultline-prepared domain off SRC, N at a time, each by
 * `faultline virt migrate` (a child of ours); a summary table. Domains
 * that cannot move say why and stay where they run. */
int virt_cmd_drain(int argc, char **argv)
{
	const char *src = NULL, *dest = NULL;
	long par = 1;

	cli_args_command("virt drain");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc)
			dest = argv[++i];
		else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
			par = cli_int("--parallel", argv[++i], 1, 16);
		else if (argv[i][0] != '-' && !src)
			src = argv[i];
		else {
			fprintf(stderr, "usage: faultline virt drain SRC-URI --to DEST-URI [--parallel N]\n");
			return 2;
		}
	}
	if (!src || !dest)
		return virt_fail("drain", "give the host's libvirt URI and --to DEST-URI");
	virSetErrorFunc(NULL, virt_quiet);
	virConnectPtr c = virConnectOpen(src);
	if (!c)
		return virt_lv_fail("drain", src);
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0) {
		virConnectClose(c);
		return virt_lv_fail("drain", "listing the domains");
	}
	struct job {
		char name[64], out[64], err[64], result[300];
		pid_t pid;
		int status;
	} *jobs = calloc((size_t)n + 1, sizeof(*jobs));
	int running = 0, next = 0, done = 0, moved = 0;
	for (int i = 0; jobs && i < n; i++) {
		snprintf(jobs[i].name, sizeof(jobs[i].name), "%s", virDomainGetName(doms[i]));
		virDomainFree(doms[i]);
	}
	free(doms);
	virConnectClose(c);
	if (!jobs)
		return virt_fail("drain", "out of memory");
	fprintf(stderr, "draining %d running domain%s off %s to %s, %ld at a time\n", n, n == 1 ? "" : "s", src, dest,
		par);
	while (done < n) {
		while (running < par && next < n) {
			struct job *j = &jobs[next++];
			snprintf(j->out, sizeof(j->out), "/tmp/faultline-drain-%d-%d.out", (int)getpid(), next);
			snprintf(j->err, sizeof(j->err), "/tmp/faultline-drain-%d-%d.err", (int)getpid(), next);
			j->pid = fork();
			if (j->pid == 0) {
				if (!freopen(j->out, "w", stdout) || !freopen(j->err, "w", stderr))
					_exit(127);
				char *a[] = { "faultline", "virt", "migrate", j->name, (char *)dest, "--uri", (char *)src,
					      "--json", NULL };
				execv("/proc/self/exe", a);
				_exit(127);
			}
			if (j->pid < 0) {
				snprintf(j->result, sizeof(j->result), "cannot start: %s", strerror(errno));
				j->status = 1;
				done++;
				continue;
			}
			running++;
		}
		int st;
		pid_t p = wait(&st);
		if (p < 0)
			break;
		for (int i = 0; i < n; i++) {
			struct job *j = &jobs[i];
			if (j->pid != p)
				continue;
			running--;
			done++;
			j->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			/* the reason: its last line that names the problem */
			FILE *f = fopen(j->err, "re");
			char line[300];
			while (f && fgets(line, sizeof(line), f))
				if (!strncmp(line, "faultline", 9) || !strncmp(line, "domain ", 7))
					snprintf(j->result, sizeof(j->result), "%s", line);
			if (f)
				fclose(f);
			j->result[strcspn(j->result, "\n")] = 0;
			json_object *o = j->status ? NULL : json_object_from_file(j->out);	/* its --json line */
			if (o)
				snprintf(j->result, sizeof(j->result), "%s", cli_js(o, "id") ? cli_js(o, "id") : "");
			json_object_put(o);
			unlink(j->out);
			unlink(j->err);
			moved += !j->status;
		}
	}
	printf("%-24s %-8s %s\n", "DOMAIN", "RESULT", "MIGRATION / WHY NOT");
	for (int i = 0; i < n; i++)
		printf("%-24s %-8s %s\n", jobs[i].name, jobs[i].status ? "stays" : "moved", jobs[i].result);
	printf("%d of %d moved\n", moved, n);
	free(jobs);
	return moved == n ? 0 : 1;
}
