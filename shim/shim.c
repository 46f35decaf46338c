/* libfaultline-shim.so: LD_PRELOAD into QEMU (or any process mapping guest
 * RAM). It owns the userfaultfd over guest-RAM mappings and hands it, with
 * the region table, to whichever faultline agent connects.
 *
 * Env: FAULTLINE_SHIM_RAM  path or prefix of guest-RAM files
 *      FAULTLINE_SHIM_SOCK UNIX socket path the shim listens on (0600)
 *      FAULTLINE_SHIM_ROLE source|dest (default: dest iff argv has -incoming)
 * Without FAULTLINE_SHIM_RAM the shim changes nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "../uffd/compat.h"
#include "faultline/shimctl.h"
#include "faultline/uffd.h"

#define EXPORT __attribute__((visibility("default")))

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static mmap_fn real_mmap;
static munmap_fn real_munmap;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fl_shim_table g_tab;
static const char *g_ram, *g_sock;
static int g_uffd = -1;
static int g_gate;	/* an agent opened the gate: the guest may depend on its pages */
static int g_listening;
static int g_enabled;

static void shim_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0) {
		fprintf(stderr, "faultline-shim[%d]: %s\n", (int)getpid(), buf);
	}
}

static int argv_has_incoming(void)
{
	char buf[8192];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (char *p = buf; p < buf + n; p += strlen(p) + 1)
		if (!strcmp(p, "-incoming") || !strcmp(p, "--incoming") ||
		    !strncmp(p, "--incoming=", 11))
			return 1;
	return 0;
}

__attribute__((constructor)) static void shim_init(void)
{
	real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	g_ram = getenv("FAULTLINE_SHIM_RAM");
	g_sock = getenv("FAULTLINE_SHIM_SOCK");
	if (!g_ram || !*g_ram)
		return;
	if (!g_sock || !*g_sock) {
		shim_log("FAULTLINE_SHIM_RAM set without FAULTLINE_SHIM_SOCK; shim disabled");
		return;
	}
	const char *role = getenv("FAULTLINE_SHIM_ROLE");
	g_tab.magic = FL_SHIM_MAGIC;
	g_tab.version = FL_SHIM_VERSION;
	g_tab.pid = getpid();
	if (role && !strcmp(role, "dest"))
		g_tab.role = FL_SHIM_ROLE_DEST;
	else if (role && !strcmp(role, "source"))
		g_tab.role = FL_SHIM_ROLE_SOURCE;
	else
		g_tab.role = argv_has_incoming() ? FL_SHIM_ROLE_DEST : FL_SHIM_ROLE_SOURCE;
	g_enabled = 1;
	/* QEMU's mem-path directory must exist; say so in our words too */
	char dir[FL_SHIM_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", g_ram);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		struct stat st;
		if (stat(dir, &st) < 0)
			shim_log("the guest-RAM directory %s does not exist (FAULTLINE_SHIM_RAM=%s): "
				 "create it before starting the VM", dir, g_ram);
	}
}

/* Decide a request under g_lock: which state it finds, whether it gets
 * the fd. 0 or the -errno the agent is told. */
static int decide(uint32_t op, pid_t agent)
{
	if (op == FL_SHIM_OP_INFO)
		return 0;
	if (g_uffd < 0)
		return g_tab.error ? g_tab.error : -ENOENT;
	if (g_tab.holder)
		return -EBUSY;
	if (op == FL_SHIM_OP_CLAIM_DEST || op == FL_SHIM_OP_RESUME_DEST) {
		if (g_tab.role != FL_SHIM_ROLE_DEST)
			return -EINVAL;
		if (g_tab.state != (op == FL_SHIM_OP_CLAIM_DEST ? FL_SHIM_PRISTINE : FL_SHIM_SERVED))
			return -EPERM;
	} else if (op == FL_SHIM_OP_CLAIM_SOURCE) {
		/* a destination that completed is an ordinary VM now */
		if (g_tab.role != FL_SHIM_ROLE_SOURCE && g_tab.state != FL_SHIM_COMPLETE)
			return -EINVAL;
	} else {
		return -EOPNOTSUPP;
	}
	g_tab.holder = agent;
	g_tab.last_holder = agent;
	g_tab.claims++;
	if (op != FL_SHIM_OP_CLAIM_SOURCE)
		g_tab.state = FL_SHIM_CLAIMED;
	return 0;
}

static void serve_client(int c)
{
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	struct fl_shim_request req;

	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    (cr.uid != 0 && cr.uid != geteuid())) {
		shim_log("refusing agent pid %d uid %d", (int)cr.pid, (int)cr.uid);
		return;
	}
	struct timeval tv = { 5, 0 };	/* a request comes at once, or never */
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (recv(c, &req, sizeof(req), MSG_WAITALL) != (ssize_t)sizeof(req) ||
	    req.magic != FL_SHIM_MAGIC || req.version != FL_SHIM_VERSION) {
		shim_log("agent pid %d sent no valid request (another faultline version?)", (int)cr.pid);
		return;
	}
	pthread_mutex_lock(&g_lock);
	struct fl_shim_table t = g_tab;	/* the state the request found */
	int rc = decide(req.op, cr.pid);
	int fd = rc == 0 && req.op != FL_SHIM_OP_INFO ? g_uffd : -1;
	pthread_mutex_unlock(&g_lock);
	if (rc)
		t.error = rc;	/* else the table's own (a failed uffd creation) */

	struct iovec iov = { &t, sizeof(t) };
	char ctl[CMSG_SPACE(sizeof(int))];
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	memset(ctl, 0, sizeof(ctl));
	if (fd >= 0) {
		m.msg_control = ctl;
		m.msg_controllen = sizeof(ctl);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	if (sendmsg(c, &m, MSG_NOSIGNAL) < 0) {
		shim_log("send to agent failed: %s", strerror(errno));
		if (fd >= 0) {	/* it never got the fd: the claim did not happen */
			pthread_mutex_lock(&g_lock);
			g_tab.holder = 0;
			g_tab.state = t.state;
			pthread_mutex_unlock(&g_lock);
		}
		return;
	}
	if (fd < 0)
		return;
	/* The agent holds the fd until it sends its release byte or dies;
	 * no deadline here: a migration takes as long as it takes. */
	tv.tv_sec = 0;
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char how = 0;
	ssize_t n;
	for (;;) {
		do
			n = recv(c, &how, 1, 0);
		while (n < 0 && errno == EINTR);
		if (n != 1 || how != FL_SHIM_GATE_OPEN)
			break;
		pthread_mutex_lock(&g_lock);	/* the guest may depend on this agent's pages from now */
		g_gate = 1;
		pthread_mutex_unlock(&g_lock);
	}
	pthread_mutex_lock(&g_lock);
	g_tab.holder = 0;
	/* a resumed post-copy opened the gate long ago */
	if (req.op == FL_SHIM_OP_RESUME_DEST)
		g_gate = 1;
	if (req.op != FL_SHIM_OP_CLAIM_SOURCE)
		g_tab.state = n == 1 && how == FL_SHIM_RELEASE_UNTOUCHED ? FL_SHIM_PRISTINE
			    : n == 1 && how == FL_SHIM_RELEASE_COMPLETE ? FL_SHIM_COMPLETE
			    : g_gate ? FL_SHIM_SERVED : FL_SHIM_PRISTINE;
	if (g_tab.state == FL_SHIM_PRISTINE)
		g_gate = 0;
	pthread_mutex_unlock(&g_lock);
}

static void *client_main(void *arg)
{
	int c = (int)(intptr_t)arg;

	serve_client(c);
	close(c);
	return NULL;
}

static void *listener(void *arg)
{
	int l = (int)(intptr_t)arg;

	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			shim_log("accept: %s", strerror(errno));
			return NULL;
		}
		/* One thread per agent: a holder waits on its connection while
		 * others are told the fd is taken. */
		pthread_t th;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &at, client_main, (void *)(intptr_t)c))
			close(c);
		pthread_attr_destroy(&at);
	}
}

/* mkdir -p of the socket's directory, 0700 for what we create. */
static int make_parent(const char *path)
{
	char d[sizeof(((struct sockaddr_un *)0)->sun_path)];

	snprintf(d, sizeof(d), "%s", path);
	char *slash = strrchr(d, '/');
	if (!slash || slash == d)
		return 0;
	*slash = 0;
	for (char *p = d + 1; ; p++) {
		if (*p == '/' || !*p) {
			char c = *p;
			*p = 0;
			if (mkdir(d, 0700) < 0 && errno != EEXIST)
				return -errno;
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

/* Called with g_lock held. */
static int start_listener(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (strlen(g_sock) >= sizeof(a.sun_path)) {
		shim_log("socket path too long: %s", g_sock);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, g_sock);
	int rc = make_parent(g_sock);
	if (rc) {
		shim_log("cannot create the directory of the shim socket %s (FAULTLINE_SHIM_SOCK): %s", g_sock, strerror(-rc));
		return rc;
	}
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -errno;
	unlink(g_sock);
	mode_t old = umask(077);
	rc = bind(l, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc < 0 || chmod(g_sock, 0600) < 0 || listen(l, 16) < 0) {
		rc = -errno;
		shim_log("cannot listen on the shim socket %s (FAULTLINE_SHIM_SOCK): %s", g_sock, strerror(errno));
		close(l);
		return rc;
	}
	pthread_t th;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &at, listener, (void *)(intptr_t)l);
	pthread_attr_destroy(&at);
	if (rc) {
		close(l);
		return -rc;
	}
	return 0;
}

static int matches(int fd, char *path, size_t plen)
{
	char link[64];

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, plen - 1);
	if (n <= 0)
		return 0;
	path[n] = 0;
	return !strncmp(path, g_ram, strlen(g_ram));
}

/* Called with g_lock held: track a new guest-RAM mapping. Returns 0 or
 * -errno; on error in a destination the mapping must not be used. */
static int track(void *addr, size_t len, int fd, off_t off, const char *path)
{
	struct statfs sfs;
	struct stat st;
	uint32_t ps = 4096;
	int huge = 0;

	if (fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == HUGETLBFS_MAGIC) {
		huge = 1;
		if (fstat(fd, &st) == 0)
			ps = (uint32_t)st.st_blksize;
	}
	if (g_tab.nregions >= FL_SHIM_MAX_REGIONS) {
		shim_log("more than %d guest-RAM mappings", FL_SHIM_MAX_REGIONS);
		return -ENOSPC;
	}
	if (!g_listening) {
		/* No socket means no agent can ever reach this VM: fail its
		 * start, whatever its role, rather than run unmigratable. */
		int rc = start_listener();
		if (rc)
			return rc;
		g_listening = 1;
	}
	if (g_uffd < 0 && !g_tab.error) {
		struct fl_uffd_caps caps;
		int rc = fl_uffd_probe(&caps);
		uint64_t got = 0;
		if (rc == 0)
			rc = fl_uffd_open(fl_uffd_guest_features(&caps), ~0ull, &got);
		if (rc < 0) {
			g_tab.error = rc;	/* the agent is told why */
			shim_log("cannot create userfaultfd: %s", strerror(-rc));
			if (g_tab.role == FL_SHIM_ROLE_DEST)
				return rc;
		} else {
			g_uffd = rc;
			g_tab.features = got;
		}
	}
	struct fl_shim_region *r = &g_tab.r[g_tab.nregions];
	memset(r, 0, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->offset = (uint64_t)off;
	r->addr = (uint64_t)(uintptr_t)addr;
	r->length = len;
	r->page_size = ps;
	if (g_tab.role == FL_SHIM_ROLE_DEST) {
		/* Nothing may be read before an agent answers: arm at once. */
		unsigned modes = FL_UFFD_MISSING;
		uint64_t need = huge ? UFFD_FEATURE_MINOR_HUGETLBFS : UFFD_FEATURE_MINOR_SHMEM;
		if (g_tab.features & need)
			modes |= FL_UFFD_MINOR;
		int rc = fl_uffd_register(g_uffd, addr, len, modes, NULL);
		if (rc) {
			shim_log("cannot register %s for userfaultfd: %s", path, strerror(-rc));
			return rc;
		}
		r->modes = modes;
	}
	g_tab.nregions++;
	return 0;
}

static void *hooked_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!real_mmap)
		real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	void *p = real_mmap(addr, len, prot, flags, fd, off);
	char path[FL_SHIM_PATH_MAX];

	if (p == MAP_FAILED || !g_enabled || fd < 0 || !(flags & MAP_SHARED) ||
	    !matches(fd, path, sizeof(path)))
		return p;
	pthread_mutex_lock(&g_lock);
	int rc = track(p, len, fd, off, path);
	pthread_mutex_unlock(&g_lock);
	if (rc) {	/* track() fails only for what makes the VM unmigratable */
		real_munmap(p, len);
		errno = -rc;
		return MAP_FAILED;
	}
	return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return hooked_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return hooked_mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	if (!real_munmap)
		real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	if (g_enabled) {
		uint64_t a = (uint64_t)(uintptr_t)addr;
		pthread_mutex_lock(&g_lock);
		for (uint32_t i = 0; i < g_tab.nregions; i++) {
			struct fl_shim_region *r = &g_tab.r[i];
			/* Whole-region unmaps drop the entry; partial ones are rare
			 * for guest RAM and are reported to the agent as UNMAP events. */
			if (r->addr == a && r->length == len) {
				g_tab.r[i] = g_tab.r[--g_tab.nregions];
				break;
			}
		}
		pthread_mutex_unlock(&g_lock);
	}
	return real_munmap(addr, len);
}
