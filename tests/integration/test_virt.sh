#!/bin/bash
# libvirt-driven migration (faultline virt) between two libvirtd "hosts"
# (network, mount and UTS namespaces each, a faultlined beside each): a
# domain prepared with `faultline virt prepare`, migrated live with
# `faultline virt migrate`: faultline pre-copies its RAM while libvirt's
# Prepare is held in the destination's `started` hook, libvirt carries the
# device state, the source's STOP is the switchover, faultline serves
# post-copy. The guest checks every page; its heartbeats must continue on
# the destination.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_virt.sh"
virt_setup

# ---- prepare: refusals, the diff, --apply
virt_domain A g1 256
VF A prepare g1 > "$W/prep.out" 2>&1 && fail "an unprepared domain passed the check: $(cat "$W/prep.out")"
grep -q "is not prepared for faultline" "$W/prep.out" || fail "prepare did not say what is missing: $(cat "$W/prep.out")"
grep -q "^+.*<access mode=\"shared\"/>" "$W/prep.out" || fail "the diff has no shared memory: $(cat "$W/prep.out")"
VF A prepare g1 --apply --shim-lib "$SHIM" > "$W/prep2.out" 2>&1 || fail "prepare --apply: $(cat "$W/prep2.out")"
VF A prepare g1 --shim-lib "$SHIM" > "$W/prep3.out" 2>&1 || fail "prepared, yet: $(cat "$W/prep3.out")"
grep -q "is prepared for faultline" "$W/prep3.out" || fail "prepare: $(cat "$W/prep3.out")"
sed 's|</devices>|<hostdev mode="subsystem" type="pci" managed="yes"><source><address domain="0" bus="3" slot="0" function="0"/></source></hostdev></devices>|' \
	"$W/g1.xml" > "$W/hostdev.xml"
VF A prepare --xml "$W/hostdev.xml" > "$W/hd.out" 2>&1 && fail "a domain with a host device passed"
grep -q "host device" "$W/hd.out" || fail "no line about the host device: $(cat "$W/hd.out")"
echo "ok: prepare: the change shown, applied, host devices refused"

vh A virsh -q start g1 >/dev/null || fail "g1 does not start"
wait_hb "$W/g1.serial" 5
VF A migrate g1 "$DST" --postcopy > "$W/pc.out" 2>&1 && fail "--postcopy was accepted"
grep -q "faultline is the post-copy" "$W/pc.out" || fail "--postcopy: $(cat "$W/pc.out")"

# ---- plain libvirt with no faultlined on the destination: refused by the
# hook (RAM would be left behind), the guest runs on
kill "$PB"; wait "$PB" 2>/dev/null
vh A virsh migrate g1 "$DST" --live --p2p --migrateuri tcp://$IPB > "$W/plain.out" 2>&1 &&
	fail "libvirt migrated a faultline domain with no faultlined on the destination"
grep -q "no faultlined on this host" "$W/plain.out" || fail "the refusal does not say why: $(cat "$W/plain.out")"
vh A virsh -q domstate g1 | grep -q running || fail "g1 does not run on the source after the refusal"
vh B virsh -q list --name | grep -q g1 && fail "g1 runs on B after the refusal"
virt_fld B
echo "ok: --postcopy refused; plain virsh migrate without faultlined there refused, the guest runs on"

# ---- live migration; the destination left paused (--suspend) so that its
# RAM file can be compared with the source's at switchover, then resumed
last=$(last_hb "$W/g1.serial")
VF A migrate g1 "$DST" --suspend --json > "$W/mig.out" 2> "$W/mig.err" || {
	cat "$W/mig.err" "$W/A.log" "$W/B.log"; fail "faultline virt migrate g1 failed"; }
cat "$W/mig.err"
id=$(jget id < "$W/mig.out")
res=$(cat "$W/A/lib/$id.result.json")
[ "$(echo "$res" | jget state)" = completed ] || fail "state: $res"
[ "$(jget dest_state < "$W/mig.out")" = paused ] || fail "not paused on the destination: $(cat "$W/mig.out")"
[ "$(jget source_state < "$W/mig.out")" = "shut off" ] || fail "the source is $(jget source_state < "$W/mig.out")"
src_sha=$(echo "$res" | jget src_sha256)
dst_sha=$(vh B sh -c 'sha256sum /var/lib/libvirt/qemu/ram/libvirt/qemu/*-g1/pc.ram' | cut -c1-64)
[ -n "$src_sha" ] && [ "$src_sha" = "$dst_sha" ] || fail "RAM differs: source at switchover $src_sha, destination $dst_sha"
echo "ok: the destination's RAM file is the source's at switchover ($dst_sha)"
vh B virsh -q resume g1 >/dev/null || fail "cannot resume g1 on B"
guest_ok "$W/g1.serial" "$last"
VF A show "$id" > "$W/show.out" || fail "virt show $id"
grep -q "^nova state: completed" "$W/show.out" || fail "virt show: $(cat "$W/show.out")"
echo "ok: live migration A -> B through libvirt, RAM by faultline ($id)"

# ---- and back, running on at once
last=$(last_hb "$W/g1.serial")
VF B migrate g1 "$SRC" --json > "$W/back.out" 2> "$W/back.err" || {
	cat "$W/back.err" "$W/A.log" "$W/B.log"; fail "faultline virt migrate g1 back failed"; }
id=$(jget id < "$W/back.out")
[ "$(jget dest_state < "$W/back.out")" = running ] || fail "not running on A: $(cat "$W/back.out")"
[ "$(cat "$W/B/lib/$id.result.json" | jget state)" = completed ] || fail "back: not completed"
guest_ok "$W/g1.serial" "$last"
echo "ok: B -> A ($id)"

# ---- plain `virsh migrate --live --p2p` (as Nova does): the hook finds the
# source's faultlined in the domain's metadata, which carries the RAM as
# pure post-copy from the STOP on
for i in $(seq 100); do vh A virsh metadata g1 https://faultline.dev/xmlns/libvirt/1 2>/dev/null | grep -q daemon && break; sleep 0.2; done
vh A virsh metadata g1 https://faultline.dev/xmlns/libvirt/1 | grep -q "daemon=.$IPA:7700" ||
	fail "A's daemon did not name itself in g1's metadata: $(vh A virsh metadata g1 https://faultline.dev/xmlns/libvirt/1 2>&1)"
last=$(last_hb "$W/g1.serial")
vh A virsh migrate g1 "$DST" --live --p2p --migrateuri tcp://$IPB > "$W/plainok.out" 2>&1 || {
	cat "$W/plainok.out" "$W/A.log" "$W/B.log"; fail "plain virsh migrate of g1 failed"; }
vh B virsh -q domstate g1 | grep -q running || fail "g1 does not run on B after virsh migrate"
id=$(sed -n 's/.*migration \([^ :]*\): a libvirt migration of g1.*/\1/p' "$W/A.log" | tail -n 1)
[ -n "$id" ] || fail "A's daemon did not carry the plain migration: $(tail "$W/A.log")"
for i in $(seq 100); do [ -s "$W/A/lib/$id.result.json" ] && break; sleep 0.1; done
res=$(cat "$W/A/lib/$id.result.json")
[ "$(echo "$res" | jget state)" = completed ] || fail "plain: $res"
[ "$(echo "$res" | jget precopy_pages)" = 0 ] || fail "plain: pre-copied pages: $res"
guest_ok "$W/g1.serial" "$last"
echo "ok: plain virsh migrate --live --p2p, carried by faultline as pure post-copy ($id, $(echo "$res" | jget postcopy_pages) pages in post-copy)"
vh B virsh -q destroy g1 >/dev/null

# ---- a guest dirtying faster than a 100 Mbit/s link: faultline switches
# by itself (non-convergence) and serves the rest in post-copy
ip netns exec $A tc qdisc add dev va-$$ root tbf rate 100mbit burst 256kb latency 200ms
ip netns exec $B tc qdisc add dev vb-$$ root tbf rate 100mbit burst 256kb latency 200ms
GUEST_ARGS=hot virt_domain A g2 256
VF A prepare g2 --apply --shim-lib "$SHIM" >/dev/null || fail "prepare g2"
vh A virsh -q start g2 >/dev/null || fail "g2 does not start"
wait_hb "$W/g2.serial" 5
grep -q "GUEST READY.*hot" "$W/g2.serial" || fail "g2 is not in hot mode"
last=$(last_hb "$W/g2.serial")
VF A migrate g2 "$DST" --json > "$W/nc.out" 2> "$W/nc.err" || { cat "$W/nc.err"; fail "non-converging: the migration failed"; }
id=$(jget id < "$W/nc.out")
res=$(cat "$W/A/lib/$id.result.json")
[ "$(echo "$res" | jget state)" = completed ] || fail "non-converging: $res"
[ "$(echo "$res" | jget switch_reason)" = non-convergence ] || fail "non-converging: switch $(echo "$res" | jget switch_reason)"
[ "$(jget dest_state < "$W/nc.out")" = running ] || fail "non-converging: $(cat "$W/nc.out")"
guest_ok "$W/g2.serial" "$last"
echo "ok: non-converging guest (dirty $(echo "$res" | jget dirty_rate_mbps) vs link $(echo "$res" | jget link_mbps) Mbit/s): switched after $(echo "$res" | jget switch_at_ms) ms, $(echo "$res" | jget postcopy_pages) pages in post-copy"
vh B virsh -q destroy g2 >/dev/null

# ---- pre-copy that would take ~8 s on that link: --timeout 2 with
# force-complete (--persistent --undefinesource), then back with abort,
# then offline
virt_domain A g3 256
VF A prepare g3 --apply --shim-lib "$SHIM" >/dev/null || fail "prepare g3"
vh A virsh -q start g3 >/dev/null || fail "g3 does not start"
wait_hb "$W/g3.serial" 5
last=$(last_hb "$W/g3.serial")
VF A migrate g3 "$DST" --persistent --undefinesource --timeout 2 --timeout-action force-complete --json \
	> "$W/fc.out" 2> "$W/fc.err" || { cat "$W/fc.err"; fail "force-complete: the migration failed"; }
grep -q "timeout 2 s: force-complete" "$W/fc.err" || fail "the timeout action was not taken: $(cat "$W/fc.err")"
id=$(jget id < "$W/fc.out")
res=$(cat "$W/A/lib/$id.result.json")
[ "$(echo "$res" | jget state)" = completed ] || fail "force-complete: $res"
[ "$(echo "$res" | jget switch_reason)" = forced ] || fail "force-complete: switch $(echo "$res" | jget switch_reason)"
[ "$(jget dest_state < "$W/fc.out")" = running ] || fail "force-complete: $(cat "$W/fc.out")"
[ "$(jget dest_persistent < "$W/fc.out")" = true ] || fail "--persistent: not defined on B: $(cat "$W/fc.out")"
[ "$(jget source_state < "$W/fc.out")" = gone ] || fail "--undefinesource: still on A: $(cat "$W/fc.out")"
guest_ok "$W/g3.serial" "$last"
echo "ok: --timeout 2 --timeout-action force-complete: switched (forced) at $(echo "$res" | jget switch_at_ms) ms, $(echo "$res" | jget postcopy_pages) pages in post-copy; defined on B only"

VF B migrate g3 "$SRC" --timeout 2 --timeout-action abort --json > "$W/ab.out" 2> "$W/ab.err" &&
	fail "abort: the migration completed"
grep -q "timeout 2 s: abort" "$W/ab.err" || fail "abort: the timeout action was not taken: $(cat "$W/ab.err")"
id=$(jget id < "$W/ab.out")
[ "$(cat "$W/B/lib/$id.result.json" | jget state)" = cancelled ] || fail "abort: $(cat "$W/B/lib/$id.result.json")"
vh B virsh -q domstate g3 | grep -q running || fail "abort: g3 does not run on B"
vh A virsh -q list --name | grep -q g3 && fail "abort: g3 runs on A too"
last=$(last_hb "$W/g3.serial")
sleep 3
[ "$(last_hb "$W/g3.serial")" -gt "$last" ] || fail "abort: g3's heartbeats stopped on B"
grep -q '^CORRUPT' "$W/g3.serial" && fail "abort: the guest found corrupt pages"
echo "ok: --timeout 2 --timeout-action abort: cancelled, the guest runs on at B only"
VF B list > "$W/list.out" || fail "virt list"
grep -E "^g3 +running +prepared +$id cancelled \(cancelled\)" "$W/list.out" || fail "virt list: $(cat "$W/list.out")"

vh B virsh -q destroy g3 >/dev/null
VF B migrate g3 "$SRC" --offline --undefinesource --json > "$W/off.out" 2> "$W/off.err" || {
	cat "$W/off.err"; fail "offline migration of g3 failed"; }
[ "$(jget dest_state < "$W/off.out")" = "shut off" ] && [ "$(jget dest_persistent < "$W/off.out")" = true ] ||
	fail "offline: not defined on A: $(cat "$W/off.out")"
[ "$(jget source_state < "$W/off.out")" = gone ] || fail "offline: still on B: $(cat "$W/off.out")"
echo "ok: --offline --undefinesource: g3 defined on A, gone from B"

# ---- block migration: a qcow2 disk on each host's own storage, copied by
# libvirt (NBD) while faultline carries the RAM
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || fail "qemu-img/qemu-io missing (install-deps: qemu-utils)"
img=/var/lib/libvirt/images/g4.qcow2
for h in A B; do mkdir -p "$W/$h/libvirt-lib/images"; qemu-img create -q -f qcow2 "$W/$h/libvirt-lib/images/g4.qcow2" 64M; done
qemu-io -c "write -P 0xab 0 8M" -c "write -P 0x5c 40M 3M" "$W/A/libvirt-lib/images/g4.qcow2" >/dev/null || fail "cannot write the test disk"
virt_domain A g4 256 "$img"
VF A prepare g4 --apply --shim-lib "$SHIM" >/dev/null || fail "prepare g4"
vh A virsh -q start g4 >/dev/null || fail "g4 does not start"
wait_hb "$W/g4.serial" 5
last=$(last_hb "$W/g4.serial")
VF A migrate g4 "$DST" --copy-storage-all --json > "$W/blk.out" 2> "$W/blk.err" || {
	cat "$W/blk.err"; tail "$W/A/libvirtd.log" "$W/B/libvirtd.log"; fail "block migration of g4 failed"; }
id=$(jget id < "$W/blk.out")
[ "$(cat "$W/A/lib/$id.result.json" | jget state)" = completed ] || fail "block: $(cat "$W/A/lib/$id.result.json")"
[ "$(jget dest_state < "$W/blk.out")" = running ] || fail "block: $(cat "$W/blk.out")"
guest_ok "$W/g4.serial" "$last"
qemu-img compare -U -q "$W/A/libvirt-lib/images/g4.qcow2" "$W/B/libvirt-lib/images/g4.qcow2" ||
	fail "block: the destination's disk differs from the source's"
qemu-io -U -r -c "read -P 0x5c 40M 3M" "$W/B/libvirt-lib/images/g4.qcow2" | grep -q "read 3145728" || fail "block: the data is not on B's disk"
echo "ok: --copy-storage-all: the qcow2 disk copied by libvirt (identical), the RAM by faultline ($id)"
vh B virsh -q destroy g4 >/dev/null

# ---- a pinned, NUMA-tuned domain: its destination XML rewritten for B's
# nodes (as Nova does) and read back after; faultline's placement per cell
VIRT_EXTRA="<cputune><vcpupin vcpu='0' cpuset='1'/><emulatorpin cpuset='1'/></cputune><numatune><memnode cellid='0' mode='strict' nodeset='0'/></numatune><cpu><numa><cell id='0' cpus='0' memory='256' unit='MiB'/></numa></cpu>" \
	virt_domain A g5 256
VF A prepare g5 --apply --shim-lib "$SHIM" >/dev/null || fail "prepare g5"
vh A virsh -q start g5 >/dev/null || fail "g5 does not start"
wait_hb "$W/g5.serial" 5
VF A migrate g5 "$DST" --numa-map 0:9 > "$W/nm.out" 2>&1 && fail "--numa-map to a node B lacks was accepted"
grep -q "no such node" "$W/nm.out" || fail "--numa-map 0:9: $(cat "$W/nm.out")"
last=$(last_hb "$W/g5.serial")
VF A migrate g5 "$DST" --numa-map 0:0 --json > "$W/numa.out" 2> "$W/numa.err" || {
	cat "$W/numa.err"; fail "NUMA-aware migration of g5 failed"; }
grep "^NUMA" "$W/numa.err"
[ "$(jget numa_verified < "$W/numa.out")" = true ] || fail "NUMA: not verified: $(cat "$W/numa.err")"
cpus0=$(vh B virsh capabilities | tr -d '\n' | sed -n "s|.*<cell id='0'>.*<cpus num='[0-9]*'>\(.*\)</cpus>.*</cell>.*|\1|p" | grep -o "cpu id='[0-9]*'" | grep -o "[0-9]*" | paste -sd,)
vh B virsh vcpupin g5 --live | tee "$W/pin.out"
pinned=$(awk '$1 == "0" {print $2}' "$W/pin.out")
[ -n "$cpus0" ] && [ "$pinned" != 1 ] || fail "NUMA: vCPU 0 still pinned as on the source ($pinned; node 0 has $cpus0)"
grep -q "NUMA: ram-node0: node 0, 100.0% of its pages on it" "$W/numa.err" || fail "NUMA: placement: $(grep NUMA "$W/numa.err")"
guest_ok "$W/g5.serial" "$last"
echo "ok: NUMA-tuned domain: vCPU 0 pinned to $pinned on B (node 0: $cpus0; it was 1 on A), memory bound to node 0, placement verified"
vh B virsh -q destroy g5 >/dev/null
echo PASS
