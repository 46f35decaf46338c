# faultline: plain Makefile, configured by ./configure (config.mk).
ifneq ($(wildcard config.mk),)
include config.mk
endif

CC ?= cc
OPT ?= -O2 -g
SAN ?=
WARN = -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
CFLAGS_ALL = -std=gnu11 $(OPT) $(SAN) $(WARN) -fPIC -Iinclude -I. $(CFLAGS)
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
all: libfaultline.a libfaultline.so shim/libfaultline-shim.so $(TOOLS) tests bench-build
endif

libfaultline.a: $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^

# The shared library exports fl_* only (libfaultline.map) under its soname.
SONAME = libfaultline.so.0
libfaultline.so: $(LIB_OBJ) libfaultline.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=libfaultline.map -o $@ $(LIB_OBJ) \
		$(SAN) $(LDLIBS_ALL)

%.o: %.c $(wildcard include/faultline/*.h) uffd/compat.h core/util.h core/report.h core/pace.h core/persist.h dest/dest.h dest/sched.h source/source.h transport/rdma_int.h transport/int.h vmm/driver.h migrate/controller.h config.mk
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# The shim carries its own copy of the uffd layer, hidden, so nothing it
# brings can clash with the host process (QEMU) symbols.
shim/libfaultline-shim.so: shim/shim.c uffd/uffd.c include/faultline/shimctl.h include/faultline/uffd.h
	$(CC) -std=gnu11 -O2 -g $(WARN) -fPIC -fvisibility=hidden -Iinclude -shared -o $@ \
		shim/shim.c uffd/uffd.c -ldl -lpthread

XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null)
XML_LIBS := $(shell pkg-config --libs libxml-2.0 2>/dev/null)
CLI_SRC = tools/faultline.c tools/cli_virt.c tools/cli_virt_prepare.c tools/cli_virt_migrate.c tools/cli_virt_drain.c tools/virt_xml.c tools/virt_numa.c tools/cli_migrate.c tools/cli_util.c \
	tools/cli_demo.c tools/cli_check.c tools/cli_args.c tools/cli_plot.c tools/cli_status.c tools/cli_daemon.c
tools/faultline: $(CLI_SRC) tools/vmctl.h tools/cli.h tools/virt.h tools/virt_xml_int.h libfaultline.a tools/faultline-libvirt-hook
	$(CC) $(CFLAGS_ALL) $(XML_CFLAGS) -DFL_PREFIX='"$(PREFIX)"' -o $@ $(CLI_SRC) libfaultline.a $(SAN) $(LDLIBS_ALL) $(LIBS_LIBVIRT) $(XML_LIBS)

DAEMON_SRC = daemon/main.c daemon/conf.c daemon/vms.c daemon/io.c daemon/peer.c daemon/serve.c daemon/mig.c daemon/incoming.c daemon/api.c daemon/qemu_argv.c daemon/virt_in.c daemon/virt_out.c
daemon/faultlined: $(DAEMON_SRC) daemon/daemon.h daemon/mig.h daemon/virt.h libfaultline.a
	$(CC) $(CFLAGS_ALL) -DFL_PREFIX='"$(PREFIX)"' -o $@ $(DAEMON_SRC) libfaultline.a $(SAN) $(LDLIBS_ALL) $(LIBS_INIH) $(LIBS_SYSTEMD) $(LIBS_LIBVIRT)

tools/guest-sim: tools/guest-sim.c tools/vmctl.h
	$(CC) $(CFLAGS_ALL) -o $@ $< $(SAN) -lpthread $(LIBS_CRYPTO)

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

faultline.pc: faultline.pc.in config.mk
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBS@|$(LDLIBS_ALL)|' $< > $@

install: all faultline.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/faultline
	install -m 755 tools/faultline tools/faultline-libvirt-hook $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)/etc/libvirt/hooks/qemu.d
	ln -sf $(PREFIX)/bin/faultline-libvirt-hook $(DESTDIR)/etc/libvirt/hooks/qemu.d/faultline
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)/etc/faultline
	install -m 755 daemon/faultlined $(DESTDIR)$(PREFIX)/sbin/
	sed 's|@PREFIX@|$(PREFIX)|' daemon/faultlined.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/faultlined.service
	[ -e $(DESTDIR)/etc/faultline/faultlined.conf ] || install -m 640 daemon/faultlined.conf $(DESTDIR)/etc/faultline/
	install -m 644 libfaultline.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 libfaultline.so $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libfaultline.so
	install -m 755 shim/libfaultline-shim.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/faultline.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/faultline/*.h $(DESTDIR)$(PREFIX)/include/faultline/
	install -m 644 faultline.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

.PHONY: all tests bench-build deps check demo bench clean distclean install fuzz fuzz-build
