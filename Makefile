# faultline: plain Makefile, configured by ./configure (config.mk).
ifneq ($(wildcard config.mk),)
include config.mk
endif

CC ?= cc
OPT ?= -O2 -g
SAN ?=
WARN = -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
CFLAGS_ALL = -std=gnu11 $(OPT) $(SAN) $(WARN) -fPIC -Iinclude -I. $(CPPFLAGS) $(CFLAGS)
LDLIBS_ALL = -lpthread $(LIBS_JSONC) $(LIBS_CRYPTO) $(LIBS_IBVERBS) $(LIBS_RDMACM) $(LIBS_NUMA)

LIB_SRC = uffd/uffd.c core/version.c core/bitmap.c core/hist.c core/state.c core/report.c core/error.c core/log.c core/pace.c core/persist.c \
	wire/proto.c wire/frame.c wire/line.c transport/transport.c transport/tcp.c transport/tcp_serve.c transport/tls.c transport/rdma.c transport/rdma_server.c \
	host/numa.c host/dirty.c vmm/qmp.c vmm/vmm.c vmm/guestsim.c vmm/qemu.c shim/shimctl.c \
	source/run.c source/setup.c source/serve.c source/link.c source/precopy.c source/restart.c source/ctl.c \
	dest/run.c dest/link.c dest/recover.c dest/restart.c dest/ctl.c dest/setup.c dest/place.c dest/fault.c dest/bulk.c dest/sched.c dest/precopy.c \
	migrate/migrate.c migrate/files.c migrate/observe.c migrate/result.c
LIB_OBJ = $(LIB_SRC:.c=.o)

TOOLS = tools/faultline tools/guest-sim daemon/faultlined
UNIT_TESTS = $(patsubst %.c,%,$(wildcard tests/unit/test_*.c))
BENCH = bench/fl-bench

ifeq ($(wildcard config.mk),)
# Not configured yet: configure, then build with what it found.
all:
	./configure
	$(MAKE) all
else
all: programs tests bench-build
endif

# what installs: the libraries, the shim, the programs
programs: libfaultline.a libfaultline.so shim/libfaultline-shim.so $(TOOLS)

libfaultline.a: $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^

# The release (version.h is the one place) and where things install.
VERSION := $(shell sed -n 's/^\#define FL_VERSION "\(.*\)"/\1/p' include/faultline/version.h)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
LIBEXECDIR ?= $(PREFIX)/libexec
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
SYSCONFDIR ?= /etc
HOOKDIR ?= $(SYSCONFDIR)/libvirt/hooks/qemu.d
PKGLIBDIR = $(LIBDIR)/faultline
PKGEXECDIR = $(LIBEXECDIR)/faultline
# the programs find the shim and guest-sim relative to themselves first
PATHS_DEF = -DFL_SHIM_PATH='"$(PKGLIBDIR)/libfaultline-shim.so"' \
	-DFL_SHIM_REL='"$(shell realpath -m --relative-to=$(BINDIR) $(PKGLIBDIR))/libfaultline-shim.so"' \
	-DFL_LIBEXEC_PATH='"$(PKGEXECDIR)"' -DFL_LIBEXEC_REL='"$(shell realpath -m --relative-to=$(BINDIR) $(PKGEXECDIR))"'

# The shared library exports fl_* only (libfaultline.map) under its soname;
# the soname's number moves when the ABI breaks (1: fl_hello grew).
SOVERSION = 1
SONAME = libfaultline.so.$(SOVERSION)
LIBREAL = libfaultline.so.$(SOVERSION).$(subst .,,$(suffix $(basename $(VERSION)))).$(subst .,,$(suffix $(VERSION)))
libfaultline.so: $(LIB_OBJ) libfaultline.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=libfaultline.map $(LDFLAGS) -o $@ $(LIB_OBJ) \
		$(SAN) $(LDLIBS_ALL)

%.o: %.c $(wildcard include/faultline/*.h) uffd/compat.h core/util.h core/report.h core/pace.h core/persist.h dest/dest.h dest/sched.h source/source.h transport/rdma_int.h transport/int.h vmm/driver.h migrate/controller.h config.mk
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# The shim carries its own copy of the uffd layer, hidden, so nothing it
# brings can clash with the host process (QEMU) symbols.
shim/libfaultline-shim.so: shim/shim.c uffd/uffd.c include/faultline/shimctl.h include/faultline/uffd.h
	$(CC) -std=gnu11 -O2 -g $(WARN) -fPIC -fvisibility=hidden -Iinclude $(CPPFLAGS) $(CFLAGS) -shared $(LDFLAGS) -o $@ \
		shim/shim.c uffd/uffd.c -ldl -lpthread

XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null)
XML_LIBS := $(shell pkg-config --libs libxml-2.0 2>/dev/null)
CLI_SRC = tools/faultline.c tools/cli_virt.c tools/cli_virt_prepare.c tools/cli_virt_migrate.c tools/cli_virt_drain.c tools/virt_xml.c tools/virt_numa.c tools/cli_migrate.c tools/cli_util.c \
	tools/cli_demo.c tools/cli_check.c tools/cli_args.c tools/cli_plot.c tools/cli_status.c tools/cli_daemon.c
tools/faultline: $(CLI_SRC) core/paths.h include/faultline/version.h tools/vmctl.h tools/cli.h tools/virt.h tools/virt_xml_int.h libfaultline.a tools/faultline-libvirt-hook
	$(CC) $(CFLAGS_ALL) $(XML_CFLAGS) $(PATHS_DEF) $(LDFLAGS) -o $@ $(CLI_SRC) libfaultline.a $(SAN) $(LDLIBS_ALL) $(LIBS_LIBVIRT) $(XML_LIBS)

DAEMON_SRC = daemon/main.c daemon/conf.c daemon/vms.c daemon/io.c daemon/peer.c daemon/serve.c daemon/mig.c daemon/incoming.c daemon/api.c daemon/qemu_argv.c daemon/virt_in.c daemon/virt_out.c
daemon/faultlined: $(DAEMON_SRC) core/paths.h include/faultline/version.h daemon/daemon.h daemon/mig.h daemon/virt.h libfaultline.a
	$(CC) $(CFLAGS_ALL) $(PATHS_DEF) $(LDFLAGS) -o $@ $(DAEMON_SRC) libfaultline.a $(SAN) $(LDLIBS_ALL) $(LIBS_INIH) $(LIBS_SYSTEMD) $(LIBS_LIBVIRT)

tools/guest-sim: tools/guest-sim.c tools/vmctl.h
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) -o $@ $< $(SAN) -lpthread $(LIBS_CRYPTO)

tests: $(UNIT_TESTS) tests/integration/fakepeer tests/integration/backend-standin tests/integration/rdma-selftest

tests/integration/rdma-selftest: tests/integration/rdma-selftest.c libfaultline.a
	$(CC) $(CFLAGS_ALL) -o $@ $< libfaultline.a $(SAN) $(LDLIBS_ALL)

tests/integration/backend-standin: tests/integration/backend-standin.c
	$(CC) $(CFLAGS_ALL) -o $@ $<

tests/integration/fakepeer: tests/integration/fakepeer.c libfaultline.a
	$(CC) $(CFLAGS_ALL) -o $@ $< libfaultline.a $(SAN) $(LDLIBS_ALL)

# Every verbs/rdma_cm call of the transport is faked in the test.
RDMA_WRAP = $(addprefix -Wl$(comma)--wrap=,rdma_create_event_channel rdma_destroy_event_channel \
	rdma_getaddrinfo rdma_freeaddrinfo rdma_create_id rdma_destroy_id rdma_resolve_addr \
	rdma_resolve_route rdma_bind_addr rdma_listen rdma_get_cm_event rdma_ack_cm_event \
	rdma_create_qp rdma_destroy_qp rdma_connect rdma_disconnect rdma_accept rdma_reject \
	ibv_query_device ibv_alloc_pd ibv_dealloc_pd ibv_create_comp_channel \
	ibv_destroy_comp_channel ibv_create_cq ibv_destroy_cq ibv_get_cq_event ibv_ack_cq_events \
	ibv_reg_mr ibv_dereg_mr)
comma = ,

tests/unit/test_rdma: tests/unit/test_rdma.c libfaultline.a
	$(CC) $(CFLAGS_ALL) -o $@ $< libfaultline.a $(RDMA_WRAP) $(SAN) $(LDLIBS_ALL) $(LIBS_CMOCKA)

tests/unit/test_virt_xml: tests/unit/test_virt_xml.c tools/virt_xml.c tools/virt_numa.c tools/virt.h tools/virt_xml_int.h
	$(CC) $(CFLAGS_ALL) $(XML_CFLAGS) -o $@ $< tools/virt_xml.c tools/virt_numa.c $(SAN) $(XML_LIBS) $(LIBS_CMOCKA)

tests/unit/test_%: tests/unit/test_%.c libfaultline.a
	$(CC) $(CFLAGS_ALL) -o $@ $< libfaultline.a $(SAN) $(LDLIBS_ALL) $(LIBS_CMOCKA)

bench-build: $(BENCH)

bench/fl-bench: bench/fl-bench.c bench/floors.c bench/bench.h libfaultline.a
	$(CC) $(CFLAGS_ALL) -o $@ bench/fl-bench.c bench/floors.c libfaultline.a $(SAN) $(LDLIBS_ALL)

# libFuzzer targets: the library rebuilt with clang and the sanitizers.
FUZZ_CC ?= clang
FUZZ_FLAGS = -std=gnu11 -g -O1 -fno-omit-frame-pointer -Iinclude -I. \
	-fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,tests/fuzz/bin/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_OBJ = $(patsubst %.c,tests/fuzz/obj/%.o,$(LIB_SRC))

tests/fuzz/obj/%.o: %.c $(wildcard include/faultline/*.h) uffd/compat.h core/util.h core/report.h core/pace.h core/persist.h dest/dest.h dest/sched.h source/source.h transport/rdma_int.h transport/int.h vmm/driver.h migrate/controller.h config.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

tests/fuzz/bin/%: tests/fuzz/%.c tests/fuzz/feed.h $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(LDLIBS_ALL)

# the daemon's peer protocol: its files but main
FUZZ_DAEMON_OBJ = $(patsubst %.c,tests/fuzz/obj/%.o,$(filter-out daemon/main.c,$(DAEMON_SRC)))
tests/fuzz/obj/daemon/%.o: daemon/%.c daemon/daemon.h $(wildcard include/faultline/*.h) core/report.h config.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
tests/fuzz/bin/fuzz_peer: tests/fuzz/fuzz_peer.c $(FUZZ_OBJ) $(FUZZ_DAEMON_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_DAEMON_OBJ) $(FUZZ_OBJ) $(LDLIBS_ALL) $(LIBS_INIH) $(LIBS_LIBVIRT)

tests/fuzz/bin/fuzz_virt_xml: tests/fuzz/fuzz_virt_xml.c tools/virt_xml.c tools/virt_numa.c tools/virt.h tools/virt_xml_int.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(XML_CFLAGS) -fsanitize=fuzzer -o $@ $< tools/virt_xml.c tools/virt_numa.c $(XML_LIBS)

tests/fuzz/mkseeds: tests/fuzz/mkseeds.c libfaultline.a
	$(CC) $(CFLAGS_ALL) -o $@ $< libfaultline.a $(LDLIBS_ALL)

fuzz-build: $(FUZZ_TARGETS)

# make fuzz FUZZ_SECONDS=600: longer runs; make check runs each for 30 s.
FUZZ_SECONDS ?= 30
fuzz: deps
	$(MAKE) fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./tests/fuzz/run-fuzz

deps:
	./scripts/install-deps

check: deps
	$(MAKE) all
	./tests/run-tests

demo: deps
	$(MAKE) all
	./tools/faultline demo

bench: deps
	$(MAKE) all
	./bench/fl-bench
	./bench/qemu-compare
	./bench/vm-rdma
	./bench/vm-numa
	./bench/recover
	./bench/virt-compare

clean:
	rm -f $(LIB_OBJ) libfaultline.a libfaultline.so shim/libfaultline-shim.so $(TOOLS) \
		$(UNIT_TESTS) $(BENCH) tests/integration/fakepeer tests/integration/backend-standin \
		tests/integration/rdma-selftest tests/fuzz/mkseeds
	rm -rf tests/fuzz/bin tests/fuzz/obj

distclean: clean
	rm -f config.h config.mk faultline.pc
	rm -rf deb

faultline.pc: faultline.pc.in config.mk include/faultline/version.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LDLIBS_ALL)|' $< > $@

MAN = man/faultline.8 man/faultlined.8 man/faultlined.conf.5 man/faultline-shim.7
# Every file make install writes (uninstall removes these, then the empty
# directories of ours); the config only while it is the shipped one.
INSTALLED = $(BINDIR)/faultline $(SBINDIR)/faultlined $(PKGEXECDIR)/faultline-libvirt-hook \
	$(PKGEXECDIR)/guest-sim $(PKGLIBDIR)/libfaultline-shim.so $(LIBDIR)/$(LIBREAL) $(LIBDIR)/$(SONAME) \
	$(LIBDIR)/libfaultline.so $(LIBDIR)/libfaultline.a $(LIBDIR)/pkgconfig/faultline.pc \
	$(INCLUDEDIR)/faultline.h $(addprefix $(INCLUDEDIR)/,$(patsubst include/%,%,$(wildcard include/faultline/*.h))) \
	$(UNITDIR)/faultlined.service $(HOOKDIR)/faultline $(BASHCOMPDIR)/faultline $(BASHCOMPDIR)/faultlined \
	$(addprefix $(MANDIR)/man,$(foreach m,$(MAN),$(subst .,,$(suffix $(m)))/$(notdir $(m))))

install: programs faultline.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PKGEXECDIR) $(DESTDIR)$(PKGLIBDIR) \
		$(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/faultline $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/faultline $(DESTDIR)$(HOOKDIR) $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 755 tools/faultline $(DESTDIR)$(BINDIR)/
	install -m 755 daemon/faultlined $(DESTDIR)$(SBINDIR)/
	sed 's|@BINDIR@|$(BINDIR)|' tools/faultline-libvirt-hook > $(DESTDIR)$(PKGEXECDIR)/faultline-libvirt-hook
	chmod 755 $(DESTDIR)$(PKGEXECDIR)/faultline-libvirt-hook
	install -m 755 tools/guest-sim $(DESTDIR)$(PKGEXECDIR)/
	install -m 644 shim/libfaultline-shim.so $(DESTDIR)$(PKGLIBDIR)/
	ln -sfn $(PKGEXECDIR)/faultline-libvirt-hook $(DESTDIR)$(HOOKDIR)/faultline
	sed 's|@SBINDIR@|$(SBINDIR)|' daemon/faultlined.service > $(DESTDIR)$(UNITDIR)/faultlined.service
	chmod 644 $(DESTDIR)$(UNITDIR)/faultlined.service
	[ -e $(DESTDIR)$(SYSCONFDIR)/faultline/faultlined.conf ] || \
		install -m 640 daemon/faultlined.conf $(DESTDIR)$(SYSCONFDIR)/faultline/
	install -m 644 libfaultline.a $(DESTDIR)$(LIBDIR)/
	install -m 644 libfaultline.so $(DESTDIR)$(LIBDIR)/$(LIBREAL)
	ln -sfn $(LIBREAL) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libfaultline.so
	install -m 644 include/faultline.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 include/faultline/*.h $(DESTDIR)$(INCLUDEDIR)/faultline/
	install -m 644 faultline.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 644 man/faultline.8 man/faultlined.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/faultlined.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/faultline-shim.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 644 tools/faultline.bash-completion $(DESTDIR)$(BASHCOMPDIR)/faultline
	ln -sfn faultline $(DESTDIR)$(BASHCOMPDIR)/faultlined

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@c=$(DESTDIR)$(SYSCONFDIR)/faultline/faultlined.conf; \
	if [ -f $$c ] && cmp -s $$c daemon/faultlined.conf; then rm -f $$c; \
	elif [ -f $$c ]; then echo "uninstall: $$c was changed: left in place"; fi
	-rmdir $(addprefix $(DESTDIR),$(PKGEXECDIR) $(PKGLIBDIR) $(INCLUDEDIR)/faultline $(SYSCONFDIR)/faultline) 2>/dev/null
	@# a staging tree (DESTDIR) loses its emptied directories too; a system keeps its own
	@[ -z "$(DESTDIR)" ] || rmdir -p $(addprefix $(DESTDIR),$(BINDIR) $(SBINDIR) $(LIBDIR)/pkgconfig \
		$(INCLUDEDIR) $(UNITDIR) $(HOOKDIR) $(BASHCOMPDIR) $(MANDIR)/man5 $(MANDIR)/man7 $(MANDIR)/man8 \
		$(LIBEXECDIR)) 2>/dev/null; true

# The Debian packages (debian/), built from a copy of the tree's files so
# the tree's own build is left alone: deb/*.deb, checked with lintian.
DEBDIR = deb
deb:
	rm -rf $(DEBDIR) && mkdir -p $(DEBDIR)/faultline-$(VERSION)
	@[ "$$(dpkg-parsechangelog -S Version)" = "$(VERSION)" ] || \
		{ echo "deb: debian/changelog is not at $(VERSION) (version.h)"; exit 1; }
	if [ -d .git ]; then git ls-files -co --exclude-standard -z | tar --null -T - -cf - | \
		tar -xf - -C $(DEBDIR)/faultline-$(VERSION); \
	else tar --exclude=./$(DEBDIR) -cf - . | tar -xf - -C $(DEBDIR)/faultline-$(VERSION) && \
		$(MAKE) -C $(DEBDIR)/faultline-$(VERSION) distclean; fi
	cd $(DEBDIR)/faultline-$(VERSION) && dpkg-buildpackage -b -us -uc
	lintian --fail-on error --suppress-tags no-symbols-control-file $(DEBDIR)/faultline_$(VERSION)_*.changes
	@ls $(DEBDIR)/*.deb

.PHONY: all programs tests bench-build deps check demo bench clean distclean install uninstall deb fuzz fuzz-build
