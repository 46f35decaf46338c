#!/bin/bash
# A destination whose RAM does not match the source's is refused before
# switchover, and the source VM keeps running (never on none, never on two).
. "$(dirname "$0")/lib.sh"
need_root
workdir
mkdir -p "$W/src" "$W/dst"
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/src/ FAULTLINE_SHIM_SOCK=$W/src.shim \
	"$SIM" --ram "$W/src/ram0" --ctl "$W/src.ctl" --size 8M >/dev/null 2>&1 &
s=$!
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/dst/ FAULTLINE_SHIM_SOCK=$W/dst.shim \
	"$SIM" --ram "$W/dst/ram0" --ctl "$W/dst.ctl" --size 16M --incoming 127.0.0.1:7371 >/dev/null 2>&1 &
d=$!
trap 'kill $s $d 2>/dev/null; rm -rf "$W"' EXIT
for i in $(seq 50); do [ -S "$W/src.shim" ] && [ -S "$W/dst.shim" ] && break; sleep 0.1; done
out=$("$FL" migrate --json --listen 127.0.0.1:7370 --src-shim "$W/src.shim" --dst-shim "$W/dst.shim" \
	--vm-ctl "$W/src.ctl" --vm-uri 127.0.0.1:7371 --dst-vm-ctl "$W/dst.ctl" --status-dir "$W" 2>"$W/err")
rc=$?
[ $rc = 1 ] || fail "migrate exited $rc"
grep -q "differs in size\|bytes/" "$W/err" || fail "no size-mismatch message: $(cat "$W/err")"
echo "ok: $(grep -m1 failed "$W/err")"
q=$("$FL" vmctl "$W/src.ctl" query)
echo "$q" | grep -q '"state":"running"' || fail "source VM is not running after the refused migration: $q"
ops1=$(echo "$q" | jget ops); sleep 0.3
q2=$("$FL" vmctl "$W/src.ctl" query)
ops2=$(echo "$q2" | jget ops)
[ "$ops2" -gt "$ops1" ] || fail "source vCPUs are not making progress"
echo "ok: source VM still running ($ops1 -> $ops2 ops)"
echo "PASS"
