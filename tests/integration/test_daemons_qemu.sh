#!/bin/bash
# A real Linux guest under unmodified QEMU (TCG) moved between two "hosts"
# (network + mount namespaces, a faultlined each, a pre-shared key) with
# one `faultline migrate NAME --to HOST`: the source host's daemon drives
# its QEMU (x-ignore-shared, STOP at switchover), the destination host's
# daemon its own (migrate-incoming, where the guest runs afterwards). The
# guest checks every page it reads and all of them every two seconds; its
# heartbeats must continue on the destination with no corruption found.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
command -v nsenter >/dev/null || { echo "SKIP: no nsenter"; exit 77; }
need_root
workdir
G=$("$TOP/tests/vm/build-guest" "$W/guest" 2>"$W/build.err") || { cat "$W/build.err"; fail "cannot build the test guest"; }
two_hosts
printf 'faultline:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$W/keys.psk"
chmod 600 "$W/keys.psk"
fld_conf A $IPA "psk:$W/keys.psk"
fld_conf B $IPB "psk:$W/keys.psk"
fld A $A
fld B $B

QEMU_NETNS=$A qemu_vm q1src "$W/ram" 1 256M
for i in $(seq 240); do grep -q "HB seq=5 " "$W/q1src.serial" 2>/dev/null && break; sleep 0.25; done
grep -q "HB seq=5 " "$W/q1src.serial" || { tail "$W/q1src.serial" "$W/q1src.log"; fail "the guest did not boot"; }
QEMU_NETNS=$B qemu_vm q1dst "$W/ram" 1 256M -incoming defer
wait_sock "$W/q1dst.qmp" && wait_sock "$W/q1dst.shim" || fail "the destination QEMU did not start: $(cat "$W/q1dst.log")"
on A "$FL" vm add q1 --qmp "$W/q1src.qmp" --shim "$W/q1src.shim" || fail "vm add on A"
on B "$FL" vm add q1 --qmp "$W/q1dst.qmp" --shim "$W/q1dst.shim" --uri $IPB:7810 || fail "vm add on B"

on A "$FL" migrate q1 --to $IPB --json >"$W/mig.out" 2>"$W/mig.err" || {
	cat "$W/mig.err" "$W/A.log" "$W/B.log"; fail "faultline migrate q1 --to $IPB failed"; }
cat "$W/mig.err"
id=$(jget id < "$W/mig.out")
line=$(cat "$W/A/lib/$id.result.json")
[ "$(echo "$line" | jget state)" = completed ] || fail "state is not completed: $line"
[ "$(echo "$line" | jget qemu_status)" = completed ] || fail "QEMU's migration: $(echo "$line" | jget qemu_status)"
[ "$(echo "$line" | jget qemu_dst_status)" = running ] || fail "the guest does not run on the destination: $line"
[ "$(echo "$line" | jget guest_on)" != none ] || fail "the guest runs nowhere: $line"
last_src=$(grep -o 'HB seq=[0-9]*' "$W/q1src.serial" | tail -n 1 | cut -d= -f2)
for i in $(seq 200); do
	[ "$(grep -c '^HB' "$W/q1dst.serial" 2>/dev/null)" -ge 10 ] && grep -q '^VERIFY' "$W/q1dst.serial" && break
	sleep 0.1
done
first_dst=$(grep -o 'HB seq=[0-9]*' "$W/q1dst.serial" | head -n 1 | cut -d= -f2)
echo "source's last heartbeat $last_src, destination's first $first_dst; $(grep '^HB' "$W/q1dst.serial" | tail -n 1)"
[ -n "$first_dst" ] && [ "$first_dst" -gt "$last_src" ] || fail "the destination's guest did not continue the source's"
guest_selfcheck "$W/q1dst.serial" || fail "the guest's self-check (above)"
on B "$FL" list | grep -q "$id" || fail "B does not list $id"
echo "ok: a QEMU guest moved between two hosts' daemons with one command ($id), no corruption"

# a QEMU the destination does not wait for: its daemon starts one from the
# source's command line (its own RAM files, monitor, shim; -incoming defer)
QEMU_NETNS=$A qemu_vm q2src "$W/ram" 1 256M
for i in $(seq 240); do grep -q "HB seq=5 " "$W/q2src.serial" 2>/dev/null && break; sleep 0.25; done
grep -q "HB seq=5 " "$W/q2src.serial" || fail "q2 did not boot"
on A "$FL" vm add q2 --qmp "$W/q2src.qmp" --shim "$W/q2src.shim" || fail "vm add q2 on A"
on A "$FL" migrate q2 --to $IPB --json >"$W/mig2.out" 2>"$W/mig2.err" || {
	cat "$W/mig2.err" "$W/B.log"; cat "$W/B/lib/q2.qemu.log" 2>/dev/null; fail "faultline migrate q2 --to $IPB failed"; }
grep "started the destination QEMU of q2" "$W/B.log" || fail "B did not say it started q2's QEMU"
id2=$(jget id < "$W/mig2.out")
line=$(cat "$W/A/lib/$id2.result.json")
[ "$(echo "$line" | jget state)" = completed ] || fail "q2: state is not completed: $line"
[ "$(echo "$line" | jget qemu_dst_status)" = running ] || fail "q2 does not run on the destination: $line"
dser="$W/q2src.serial.q2-incoming"
last_src=$(grep -o 'HB seq=[0-9]*' "$W/q2src.serial" | tail -n 1 | cut -d= -f2)
for i in $(seq 200); do
	[ "$(grep -c '^HB' "$dser" 2>/dev/null)" -ge 10 ] && grep -q '^VERIFY' "$dser" && break
	sleep 0.1
done
first_dst=$(grep -o 'HB seq=[0-9]*' "$dser" | head -n 1 | cut -d= -f2)
echo "q2: source's last heartbeat $last_src, destination's first $first_dst; $(grep '^HB' "$dser" | tail -n 1)"
[ -n "$first_dst" ] && [ "$first_dst" -gt "$last_src" ] || fail "q2: the destination's guest did not continue the source's"
guest_selfcheck "$dser" || fail "q2: the guest's self-check (above)"
echo "ok: the destination's daemon started q2's QEMU from the source's command line; no corruption"
echo "PASS"
