#!/bin/bash
# Host drain through libvirt: `faultline virt drain SRC --to DST --parallel 2`
# moves every running faultline-prepared domain (two here) off host A;
# a domain that cannot move (not prepared) is listed with the reason and
# left running on A. Both moved guests check every page and must run on
# at B with no corruption.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_virt.sh"
virt_setup

for d in d1 d2 d3; do
	virt_domain A $d 192
	[ $d = d3 ] || VF A prepare $d --apply --shim-lib "$SHIM" >/dev/null || fail "prepare $d"
	vh A virsh -q start $d >/dev/null || fail "$d does not start"
done
for d in d1 d2 d3; do wait_hb "$W/$d.serial" 4; done
l1=$(last_hb "$W/d1.serial") l2=$(last_hb "$W/d2.serial")
VF A drain "$SRC" --to "$DST" --parallel 2 > "$W/drain.out" 2> "$W/drain.err" &&
	fail "drain said all moved, but d3 cannot: $(cat "$W/drain.out")"
cat "$W/drain.out"
grep -E "^d1 +moved +d1-" "$W/drain.out" >/dev/null && grep -E "^d2 +moved +d2-" "$W/drain.out" >/dev/null ||
	{ cat "$W/drain.err"; fail "drain: d1 and d2 did not both move"; }
grep -E "^d3 +stays +.*not prepared for faultline" "$W/drain.out" >/dev/null || fail "drain: d3's reason is missing"
grep -q "^2 of 3 moved" "$W/drain.out" || fail "drain: the count"
for d in d1 d2; do
	vh B virsh -q domstate $d | grep -q running || fail "$d does not run on B"
	vh A virsh -q list --name | grep -qx $d && fail "$d still runs on A"
done
vh A virsh -q domstate d3 | grep -q running || fail "d3 was not left running on A"
guest_ok "$W/d1.serial" "$l1"
guest_ok "$W/d2.serial" "$l2"
grep -q "^drain.*2 at a time" "$W/drain.err" || fail "drain: no header"
echo "ok: drain of A: d1 and d2 moved two at a time, d3 (not prepared) stays running with its reason"
echo PASS
