#!/bin/bash
# libfaultline as an embedder sees it: `make install` (DESTDIR) puts the
# shared library under its soname, the headers and faultline.pc; a program
# built with pkg-config against the installed umbrella header migrates a
# live guest through fl_migration_* (progress callback, result), and
# cancels another from its progress callback during pre-copy.
. "$(dirname "$0")/lib.sh"
workdir
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config missing"; exit 77; }
trap 'kill $(cat "$W/pids" 2>/dev/null) 2>/dev/null; rm -rf "$W"' EXIT

make -C "$TOP" -s install DESTDIR="$W/inst" >"$W/install.log" 2>&1 || { cat "$W/install.log"; fail "make install failed"; }
pc=$(find "$W/inst" -name faultline.pc)
[ -n "$pc" ] || fail "no faultline.pc installed"
libdir=$(dirname "$(dirname "$pc")")
[ -f "$libdir/libfaultline.so.1" ] && [ -L "$libdir/libfaultline.so" ] || fail "libfaultline.so.1 and its link not installed"
[ -f "$(dirname "$libdir")/include/faultline.h" ] || fail "umbrella header not installed"
objdump -p "$libdir/libfaultline.so.1" | grep -q "SONAME *libfaultline.so.1" || fail "no soname"
bad=$(nm -D --defined-only "$libdir/libfaultline.so.1" | awk '$3 !~ /^fl_/ && $3 !~ /^FAULTLINE_/ {print $3}' | head -3)
[ -z "$bad" ] || fail "exports beyond fl_*: $bad"
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$W/inst pkg-config --cflags --libs faultline) ||
	fail "pkg-config cannot read faultline.pc"
cc -std=gnu11 -Wall -Wextra -Werror -o "$W/embed" "$TOP/tests/integration/embed.c" $flags ||
	fail "an embedder does not build against the installed API ($flags)"
echo "ok: installed under $libdir; built with: $flags"
run() { LD_LIBRARY_PATH=$libdir "$W/embed" "$@"; }
# the embedder really uses the installed library
LD_LIBRARY_PATH=$libdir ldd "$W/embed" | grep -q "$libdir/libfaultline.so.1" || fail "embed is not linked to the installed library"

# 1. A migration run by the embedder: completed, checked by the guest, same RAM.
sim_vm s1 64M --vcpus 2
sim_vm d1 64M --incoming 127.0.0.1:7531
run complete "$W/s1.shim" "$W/d1.shim" "$W/s1.ctl" "$W/d1.ctl" 127.0.0.1:7531 127.0.0.1:7532 "$W" \
	>"$W/o1" 2>"$W/e1" || { tail -n 5 "$W/e1"; fail "the embedder's migration failed"; }
assert_migration "$(sed -n 1p "$W/o1")"
calls=$(sed -n 's/^progress_calls=\([0-9]*\).*/\1/p' "$W/o1")
[ "${calls:-0}" -gt 0 ] || fail "the progress callback was never called"
stray=$(grep -v '^embed' "$W/e1" | head -n 2)
[ -z "$stray" ] || fail "the library wrote to stderr itself: $stray"
echo "ok: migrated through fl_migration_*; progress callback called $calls times"

# 2. Cancelled from the progress callback during pre-copy: the source VM runs on.
sim_vm s2 256M --vcpus 2
sim_vm d2 256M --incoming 127.0.0.1:7533
run abort "$W/s2.shim" "$W/d2.shim" "$W/s2.ctl" "$W/d2.ctl" 127.0.0.1:7533 127.0.0.1:7534 "$W" \
	>"$W/o2" 2>"$W/e2" || { tail -n 5 "$W/e2"; fail "the embedder could not cancel during pre-copy"; }
line=$(sed -n 1p "$W/o2")
[ "$(echo "$line" | jget state)" = cancelled ] || fail "state is '$(echo "$line" | jget state)'"
[ "$(echo "$line" | jget source_vm_running)" = true ] || fail "the source VM does not run after the cancel"
grep -q "abort sent" "$W/e2" || fail "no abort was sent: $(cat "$W/e2")"
echo "ok: cancelled from the progress callback: $(grep -m1 'abort sent' "$W/e2")"
echo "PASS"
