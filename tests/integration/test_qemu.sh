#!/bin/bash
# Unmodified QEMU (TCG), RAM in a shared memory-backend-file, the shim
# preloaded, x-ignore-shared: faultline carries the RAM, QEMU the device state.
# 1. A paused VM whose RAM holds random data: the destination RAM file must be
#    byte-identical afterwards.
# 2. A running VM (SeaBIOS, no disk): the STOP event path; QEMU's own
#    migration completes and the destination VM runs.
# A booted test guest with its own page self-check is the QEMU issue's next step.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
workdir
cleanup() { qemu_stop_all; rm -rf "$W"; }
trap cleanup EXIT

# 1. paused, random RAM
mkdir -p "$W/s1"
head -c 64M /dev/urandom > "$W/s1/ram0"
qemu_vm s1 "$W" 1 64M -S
qemu_vm d1 "$W" 1 64M -incoming defer
wait_sock "$W/s1.shim" && wait_sock "$W/d1.shim" && wait_sock "$W/d1.qmp" || fail "QEMU did not start"
before=$(sha256sum "$W/s1/ram0" | cut -d' ' -f1)
out=$("$FL" qemu migrate --src-qmp "$W/s1.qmp" --dst-qmp "$W/d1.qmp" --src-shim "$W/s1.shim" \
	--dst-shim "$W/d1.shim" --listen 127.0.0.1:7410 --qemu-uri tcp:127.0.0.1:7411 --status-dir "$W" \
	--id q1 --json 2>"$W/err1") || { cat "$W/err1"; fail "faultline qemu migrate (paused VM) failed"; }
line=$(echo "$out" | tail -n 1)
echo "$line" | cut -c1-200
[ "$(echo "$line" | jget state)" = completed ] || fail "state is not completed"
[ "$(echo "$line" | jget qemu_status)" = completed ] || fail "QEMU's own migration: $(echo "$line" | jget qemu_status)"
after_src=$(sha256sum "$W/s1/ram0" | cut -d' ' -f1)
after_dst=$(sha256sum "$W/d1/ram0" | cut -d' ' -f1)
[ "$before" = "$after_src" ] || fail "the paused source's RAM changed"
[ "$after_src" = "$after_dst" ] || fail "destination RAM differs from the source"
echo "ok: paused VM, RAM files identical ($after_dst)"

# 2. running VM: the switch waits for QEMU's STOP event
qemu_vm s2 "$W" 1 64M
qemu_vm d2 "$W" 1 64M -incoming defer
wait_sock "$W/s2.shim" && wait_sock "$W/d2.shim" && wait_sock "$W/d2.qmp" || fail "QEMU did not start"
sleep 1
out=$("$FL" qemu migrate --src-qmp "$W/s2.qmp" --dst-qmp "$W/d2.qmp" --src-shim "$W/s2.shim" \
	--dst-shim "$W/d2.shim" --listen 127.0.0.1:7412 --qemu-uri tcp:127.0.0.1:7413 --status-dir "$W" \
	--json 2>"$W/err2") || { cat "$W/err2"; fail "faultline qemu migrate (running VM) failed"; }
line=$(echo "$out" | tail -n 1)
echo "$line" | cut -c1-200
# no --id: a unique one, announced first
id=$(echo "$line" | jget id)
case "$id" in qemu-[0-9]*-[0-9]*-[0-9]*) ;; *) fail "derived id is '$id'" ;; esac
grep -q "migration id $id" "$W/err2" || fail "the derived id was not announced"
# a QEMU guest has no guest-side self-check: null, never -1/false
for k in corrupt_pages max_stall_ms checksum_match; do
	echo "$line" | grep -q "\"$k\":null" || fail "$k is not null for a QEMU guest: $(echo "$line" | jget $k)"
done
[ "$(echo "$line" | jget state)" = completed ] || fail "state is not completed"
[ "$(echo "$line" | jget qemu_status)" = completed ] || fail "QEMU's own migration: $(echo "$line" | jget qemu_status)"
st=$(echo "$line" | jget qemu_dst_status)
[ "$st" = running ] || fail "destination QEMU is '$st', not running"
echo "ok: running VM migrated and runs on the destination; QEMU downtime $(echo "$line" | jget qemu_downtime_ms) ms"
echo "PASS"
