#!/bin/bash
# Bad command lines, missing files, unreachable and misbehaving peers: each a
# clear one-line error and a nonzero exit, never a crash.
. "$(dirname "$0")/lib.sh"
workdir
expect() {	# expect CODE PATTERN -- command...
	code=$1 pat=$2; shift 3
	"$@" >"$W/out" 2>"$W/err"; rc=$?
	msg=$(cat "$W/err")
	[ "$rc" = "$code" ] || fail "'$*' exited $rc, want $code: $msg"
	echo "$msg" | grep -q -- "$pat" || fail "'$*' said '$msg', want /$pat/"
	[ "$rc" -lt 128 ] || fail "'$*' crashed"
	echo "ok: exit $rc: $(head -n 1 "$W/err")"
}
expect 2 "unknown command" -- "$FL" frobnicate
expect 2 "listen HOST:PORT is required" -- "$FL" source --ram x
expect 2 "give --shim SOCK or --ram FILE" -- "$FL" source --listen 127.0.0.1:7000
expect 2 "unknown or incomplete option '--no-such-option'" -- "$FL" dest --no-such-option
expect 2 "required" -- "$FL" dest --source 127.0.0.1:1
expect 2 "bulk-conns 1..8" -- "$FL" dest --source 127.0.0.1:1 --shim x --bulk-conns 99
expect 2 "go together" -- "$FL" migrate --listen a:1 --dst-shim x --src-ram y --vm-ctl z
expect 1 "cannot open RAM file /nonexistent" -- "$FL" source --listen 127.0.0.1:0 --ram /nonexistent --status-dir "$W"
dd if=/dev/zero of="$W/ram" bs=1M count=4 2>/dev/null
expect 1 "not HOST:PORT" -- "$FL" source --listen nonsense --ram "$W/ram" --status-dir "$W"
expect 1 "not a regular file" -- "$FL" source --listen 127.0.0.1:0 --ram /dev/null --status-dir "$W"
expect 2 "unknown or incomplete option '--no-such'" -- "$FL" migrate --no-such
expect 1 "no shim at" -- "$FL" dest --source 127.0.0.1:1 --shim "$W/none.sock" --status-dir "$W"
expect 2 "need --ram and --ctl" -- "$SIM"

# A destination VM with the shim, for the peer tests.
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/dst FAULTLINE_SHIM_SOCK=$W/dst.shim \
	"$SIM" --ram "$W/dst" --ctl "$W/dst.ctl" --size 4M --incoming 127.0.0.1:0 >/dev/null 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$W"' EXIT
for i in $(seq 50); do [ -S "$W/dst.shim" ] && break; sleep 0.1; done
[ -S "$W/dst.shim" ] || fail "destination guest-sim did not start its shim"

# Nobody at the source address.
expect 1 "cannot connect to 127.0.0.1:1" -- "$FL" dest --source 127.0.0.1:1 --shim "$W/dst.shim" \
	--connect-timeout 300 --status-dir "$W"
# A source that sends garbage, a wrong version, an absurd length, a short frame.
port=7350
for mode in garbage:"malformed frame" version:"unsupported protocol version" \
	oversize:"exceeds the protocol limit" truncated:"peer closed"; do
	m=${mode%%:*} pat=${mode#*:}
	port=$((port + 1))
	"$FAKE" listen 127.0.0.1:$port "$m" >/dev/null &
	fp=$!
	sleep 0.2
	expect 1 "$pat" -- "$FL" dest --source 127.0.0.1:$port --shim "$W/dst.shim" --status-dir "$W"
	wait $fp
done

# The other way round: a garbage destination at a real source.
"$FL" source --listen 127.0.0.1:7360 --ram "$W/ram" --accept-timeout 5000 --status-dir "$W" \
	>"$W/src.out" 2>"$W/src.err" &
sp=$!
sleep 0.3
"$FAKE" connect 127.0.0.1:7360 garbage
wait $sp; rc=$?
[ $rc = 1 ] || fail "source exited $rc on a garbage hello"
grep -q "destination hello: malformed frame" "$W/src.err" || fail "source said: $(cat "$W/src.err")"
echo "ok: source: $(head -n 1 "$W/src.err")"
# migrate: a destination that cannot start fails the run; the source agent,
# which never stopped the VM, is told to stand down instead of waiting.
expect 1 "no shim at" -- "$FL" migrate --listen 127.0.0.1:7362 --src-ram "$W/ram" \
	--dst-shim "$W/nope.sock" --status-dir "$W" --id bad-dest
# A source nobody connects to gives up with a clear message.
expect 1 "no destination connected" -- "$FL" source --listen 127.0.0.1:7361 --ram "$W/ram" \
	--accept-timeout 300 --status-dir "$W"
echo "PASS"
