#!/bin/bash
# QEMU failure paths: the source's QMP socket vanishes before switchover (the
# guest must keep running on the source, the destination stands down), a
# destination QEMU that does not exist (clear error, nothing started), and a
# destination that fails to load the device state after the source stopped
# (the guest resumes on the source).
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
workdir
G=$("$TOP/tests/vm/build-guest" "$W/guest" 2>"$W/build.err") || { cat "$W/build.err"; fail "cannot build the test guest"; }
cleanup() { qemu_stop_all; rm -rf "$W"; }
trap cleanup EXIT
hb() { grep -o 'HB seq=[0-9]*' "$1" 2>/dev/null | tail -n 1 | cut -d= -f2; }

qemu_vm src "$W" 1 128M
for i in $(seq 240); do grep -q "HB seq=3 " "$W/src.serial" 2>/dev/null && break; sleep 0.25; done
grep -q "HB seq=3 " "$W/src.serial" || fail "the guest did not boot"

# 1. no destination QEMU monitor: refused before anything moves
"$FL" qemu migrate --src-qmp "$W/src.qmp" --dst-qmp "$W/none.qmp" --src-shim "$W/src.shim" \
	--dst-shim "$W/none.shim" --listen 127.0.0.1:7440 --qemu-uri tcp:127.0.0.1:7441 --status-dir "$W" \
	--id e1 >"$W/o1" 2>"$W/e1" && fail "migrating to a missing destination QEMU succeeded"
grep -q "destination QEMU at $W/none.qmp" "$W/e1" || fail "no clear error: $(cat "$W/e1")"
echo "ok: $(head -n 1 "$W/e1")"

# 2. the source's monitor disappears before the migration starts
qemu_vm dst "$W" 1 128M -incoming defer
for i in $(seq 100); do [ -S "$W/dst.qmp" ] && [ -S "$W/dst.shim" ] && break; sleep 0.05; done
mv "$W/src.qmp" "$W/src.qmp.hidden"	# connect() to the old name now fails
"$FL" qemu migrate --src-qmp "$W/src.qmp" --dst-qmp "$W/dst.qmp" --src-shim "$W/src.shim" \
	--dst-shim "$W/dst.shim" --listen 127.0.0.1:7442 --qemu-uri tcp:127.0.0.1:7443 --status-dir "$W" \
	--id e2 --json >"$W/o2" 2>"$W/e2" && fail "a migration whose source monitor vanished succeeded"
cat "$W/e2" | head -n 3
grep -q "source QEMU at $W/src.qmp" "$W/e2" || fail "no clear error about the source monitor: $(cat "$W/e2")"
before=$(hb "$W/src.serial"); sleep 1; after=$(hb "$W/src.serial")
[ "$after" -gt "$before" ] || fail "the guest stopped running on the source ($before -> $after)"
echo "ok: guest still runs on the source (heartbeat $before -> $after)"
qemu_stop_all

# 3. the destination QEMU cannot load the device state (the source has a
# device it lacks): it exits after the source stopped, before it ever ran
# the guest. The source's RAM is still the truth: the guest resumes there.
qemu_vm src3 "$W" 1 128M -device virtio-rng-pci
for i in $(seq 240); do grep -q "HB seq=3 " "$W/src3.serial" 2>/dev/null && break; sleep 0.25; done
grep -q "HB seq=3 " "$W/src3.serial" || fail "the guest did not boot"
qemu_vm dst3 "$W" 1 128M -incoming defer
for i in $(seq 100); do [ -S "$W/dst3.qmp" ] && [ -S "$W/dst3.shim" ] && break; sleep 0.05; done
"$FL" qemu migrate --src-qmp "$W/src3.qmp" --dst-qmp "$W/dst3.qmp" --src-shim "$W/src3.shim" \
	--dst-shim "$W/dst3.shim" --listen 127.0.0.1:7444 --qemu-uri tcp:127.0.0.1:7445 --status-dir "$W" \
	--id e3 --json >"$W/o3" 2>"$W/e3" && fail "a migration whose destination could not load the device state succeeded"
grep -v '^progress' "$W/e3" | head -n 4
[ "$(tail -n 1 "$W/o3" | jget guest_on)" = source ] || fail "guest_on is '$(tail -n 1 "$W/o3" | jget guest_on)', want source"
grep -q "resumed it on the source" "$W/e3" || fail "no word that the guest was resumed on the source"
before=$(hb "$W/src3.serial"); sleep 1.5; after=$(hb "$W/src3.serial")
[ "$after" -gt "$before" ] || fail "the guest does not run on the source ($before -> $after)"
kill -0 "$(cat "$W/dst3.pid")" 2>/dev/null && fail "the destination QEMU is still there"
grep -q '^CORRUPT' "$W/src3.serial" && fail "the resumed guest found corrupt pages"
echo "ok: destination failed after the stop; the guest resumed on the source (heartbeat $before -> $after)"
echo "PASS"
