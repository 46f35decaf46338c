#!/bin/bash
# The LD_PRELOAD shim: inert without its environment; a source registers
# nothing, a destination arms MISSING|MINOR at mmap time; only root or the
# VM's own uid may take the userfaultfd; non-matching files are left alone.
. "$(dirname "$0")/lib.sh"
workdir
mkdir -p "$W/ram" "$W/other"
start() {	# start NAME EXTRA-ENV... -- guest-sim args
	name=$1; shift
	env "$@" >/dev/null 2>&1 &
	eval "pid_$name=$!"
}
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT

# 1. No FAULTLINE_SHIM_RAM: nothing changes, no socket appears.
LD_PRELOAD=$SHIM FAULTLINE_SHIM_SOCK=$W/none.sock "$SIM" --ram "$W/ram/a" --ctl "$W/a.ctl" --size 4M >/dev/null 2>&1 &
for i in $(seq 50); do [ -S "$W/a.ctl" ] && break; sleep 0.1; done
sleep 0.3
[ -e "$W/none.sock" ] && fail "shim listened without FAULTLINE_SHIM_RAM"
"$FL" vmctl "$W/a.ctl" query | grep -q '"state":"running"' || fail "VM without shim env does not run"
echo "ok: inert without its environment"

# 2. Source role: regions tracked, none registered.
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/ram/ FAULTLINE_SHIM_SOCK=$W/src.sock \
	"$SIM" --ram "$W/ram/src" --ctl "$W/src.ctl" --size 4M >/dev/null 2>&1 &
for i in $(seq 50); do [ -S "$W/src.sock" ] && break; sleep 0.1; done
info=$("$FL" shim-info "$W/src.sock") || fail "shim-info on a source failed"
echo "$info"
echo "$info" | grep -q '"role":"source"' || fail "source role not detected"
echo "$info" | grep -q "\"path\":\"$W/ram/src\"" || fail "source region missing"
echo "$info" | grep -q '"missing":false' || fail "a source must not register missing faults"
[ "$(stat -c %a "$W/src.sock")" = 600 ] || fail "shim socket mode is $(stat -c %a "$W/src.sock"), want 600"
"$FL" vmctl "$W/src.ctl" query | grep -q '"state":"running"' || fail "source VM does not run under the shim"
echo "ok: source role"

# 3. Destination role (from --incoming in argv): armed at mmap time.
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/ram/ FAULTLINE_SHIM_SOCK=$W/dst.sock \
	"$SIM" --ram "$W/ram/dst" --ctl "$W/dst.ctl" --size 4M --incoming 127.0.0.1:0 >/dev/null 2>&1 &
for i in $(seq 50); do [ -S "$W/dst.sock" ] && break; sleep 0.1; done
info=$("$FL" shim-info "$W/dst.sock") || fail "shim-info on a destination failed"
echo "$info"
echo "$info" | grep -q '"role":"dest"' || fail "-incoming did not make a destination"
echo "$info" | grep -q '"missing":true,"minor":true' || fail "destination not armed MISSING|MINOR"
echo "ok: destination role"

# 4. A file outside FAULTLINE_SHIM_RAM is not tracked.
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/ram/ FAULTLINE_SHIM_SOCK=$W/oth.sock FAULTLINE_SHIM_ROLE=dest \
	"$SIM" --ram "$W/other/x" --ctl "$W/oth.ctl" --size 4M >/dev/null 2>&1 &
for i in $(seq 50); do [ -S "$W/oth.ctl" ] && break; sleep 0.1; done
sleep 0.3
[ -e "$W/oth.sock" ] && fail "shim tracked a file outside FAULTLINE_SHIM_RAM"
"$FL" vmctl "$W/oth.ctl" query | grep -q '"state":"running"' || fail "VM with an unrelated file does not run"
echo "ok: unrelated files untouched"

# 5. Another (non-root) uid may not take the userfaultfd.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 755 "$W"; chmod 666 "$W/src.sock"	# let the socket be reached; SO_PEERCRED must refuse
	if setpriv --reuid=65534 --regid=65534 --clear-groups "$FL" shim-info "$W/src.sock" >"$W/o" 2>&1; then
		fail "uid 65534 got the userfaultfd"
	fi
	echo "ok: refused uid 65534: $(cat "$W/o")"
	chmod 600 "$W/src.sock"
else
	echo "note: not root or no setpriv; uid check not exercised"
fi
# 6. The socket's directory: created (0700) when missing, for both roles; a
# VM whose shim cannot listen does not start, and the message names the path.
for role in source dest; do
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/ram/ FAULTLINE_SHIM_SOCK=$W/run-$role/faultline/vm.shim \
		FAULTLINE_SHIM_ROLE=$role "$SIM" --ram "$W/ram/d-$role" --ctl "$W/d-$role.ctl" --size 4M \
		>/dev/null 2>&1 &
	for i in $(seq 50); do [ -S "$W/run-$role/faultline/vm.shim" ] && break; sleep 0.1; done
	[ -S "$W/run-$role/faultline/vm.shim" ] || fail "$role: shim did not create its socket directory"
	[ "$(stat -c %a "$W/run-$role/faultline")" = 700 ] || fail "$role: socket directory mode is not 700"
	touch "$W/notadir-$role"
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/ram/ FAULTLINE_SHIM_SOCK=$W/notadir-$role/vm.shim \
		FAULTLINE_SHIM_ROLE=$role timeout 10 "$SIM" --ram "$W/ram/e-$role" --ctl "$W/e-$role.ctl" \
		--size 4M >/dev/null 2>"$W/e-$role.err" && fail "$role: VM started although its shim cannot listen"
	grep -q "the shim socket $W/notadir-$role/vm.shim" "$W/e-$role.err" ||
		fail "$role: no message naming the socket: $(cat "$W/e-$role.err")"
	echo "ok: $role: socket directory created; unusable path refused: $(grep -m1 faultline-shim "$W/e-$role.err")"
done
echo "PASS"
