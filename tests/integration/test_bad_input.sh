#!/bin/bash
# Bad command lines, missing files, unreachable and misbehaving peers: each a
# clear one-line error and a nonzero exit, never a crash.
. "$(dirname "$0")/lib.sh"
workdir
expect 2 "unknown command" -- "$FL" frobnicate
expect 2 "listen HOST:PORT is required" -- "$FL" source --insecure --ram x
expect 2 "give --shim SOCK or --ram FILE" -- "$FL" source --insecure --listen 127.0.0.1:7000
expect 2 "unknown or incomplete option '--no-such-option'" -- "$FL" dest --insecure --no-such-option
expect 2 "required" -- "$FL" dest --insecure --source 127.0.0.1:1
expect 2 "bulk-conns .99.: want a whole number in 1..8" -- "$FL" dest --insecure --source 127.0.0.1:1 --shim x --bulk-conns 99
expect 2 "go together" -- "$FL" migrate --listen a:1 --dst-shim x --src-ram y --vm-ctl z
expect 1 "cannot open RAM file /nonexistent" -- "$FL" source --insecure --listen 127.0.0.1:7398 --ram /nonexistent --status-dir "$W"
dd if=/dev/zero of="$W/ram" bs=1M count=4 2>/dev/null
expect 2 "want HOST:PORT" -- "$FL" source --insecure --listen nonsense --ram "$W/ram" --status-dir "$W"
expect 1 "not a regular file" -- "$FL" source --insecure --listen 127.0.0.1:7398 --ram /dev/null --status-dir "$W"
# Every value checked before anything is created: exit 2, the option named
# with what it accepts. (--listen 127.0.0.1:99999 used to listen on 34463.)
expect 2 "listen '127.0.0.1:99999': the port must be a number in 1..65535" -- "$FL" source --insecure --listen 127.0.0.1:99999 --ram "$W/ram"
for bad in "--size foo" "--size 0" "--size 5000" "--vcpus 0" "--vcpus x" "--pattern bogus" "--pattern hot:0" \
	"--bulk-conns 99" "--rate-limit bogus" "--mode fast" "--transport carrier-pigeon" "--warmup -1" "--max-rounds 0"; do
	opt=${bad%% *}
	expect 2 "demo: $opt '" -- "$FL" demo $bad --workdir "$W/never"
	[ -e "$W/never" ] && fail "demo $bad created its workdir before refusing"
done
expect 2 "connect-timeout '-5': want a whole number in 1..3600000" -- "$FL" dest --insecure --source 127.0.0.1:1 --shim x --connect-timeout -5
expect 2 "spin-us 'lots'" -- "$FL" migrate --listen 127.0.0.1:7000 --dst-shim x --src-ram y --spin-us lots
expect 2 "qemu-uri '1.2.3.4:5': want tcp:HOST:PORT" -- "$FL" qemu migrate --qemu-uri 1.2.3.4:5
expect 2 "placement-min '150'" -- "$FL" dest --insecure --source 127.0.0.1:1 --shim x --placement-min 150
# a size the RAM directory cannot hold twice is refused up front, not by the OOM killer
expect 2 "both guests need 200.0 GiB in /dev/shm" -- "$FL" demo --size 100G --workdir "$W/never"
# ext4 cannot hold guest RAM userfaultfd can serve: check refuses, as the migration would
echo data > "$TOP/tests/logs/ext4-probe"
if [ "$(stat -f -c %T "$TOP/tests/logs/ext4-probe")" != tmpfs ]; then
	expect 1 "is not on tmpfs or hugetlbfs" -- "$FL" check --ram "$TOP/tests/logs/ext4-probe"
fi
rm -f "$TOP/tests/logs/ext4-probe"
expect 2 "unknown or incomplete option '--no-such'" -- "$FL" migrate --no-such
expect 1 "no shim at" -- "$FL" dest --insecure --source 127.0.0.1:1 --shim "$W/none.sock" --status-dir "$W"
# status files are root's alone
ls "$W"/*.json >/dev/null 2>&1 || fail "no status file written"
for f in "$W"/*.json; do [ "$(stat -c %a "$f")" = 600 ] || fail "$f has mode $(stat -c %a "$f"), want 600"; done
echo "ok: status files are 0600"
expect 2 "need --ram and --ctl" -- "$SIM"

# A destination VM with the shim, for the peer tests.
LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/dst FAULTLINE_SHIM_SOCK=$W/dst.shim \
	"$SIM" --ram "$W/dst" --ctl "$W/dst.ctl" --size 4M --incoming 127.0.0.1:0 >/dev/null 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$W"' EXIT
for i in $(seq 50); do [ -S "$W/dst.shim" ] && break; sleep 0.1; done
[ -S "$W/dst.shim" ] || fail "destination guest-sim did not start its shim"

# Nobody at the source address.
expect 1 "cannot connect to 127.0.0.1:1" -- "$FL" dest --insecure --source 127.0.0.1:1 --shim "$W/dst.shim" \
	--connect-timeout 300 --status-dir "$W"
# A source that sends garbage, a wrong version, an absurd length, a short frame.
# The wrong version is named with ours: "faultline 0.2.0 (protocol 2, ...)".
port=7350
ver=$("$FL" --version | head -n1 | cut -d' ' -f2)
for mode in garbage:"malformed frame" version:"peer speaks faultline protocol 9 (faultline 9.9.9), this host protocol 2 (faultline $ver)" \
	oversize:"exceeds the protocol limit" truncated:"peer closed"; do
	m=${mode%%:*} pat=${mode#*:}
	port=$((port + 1))
	"$FAKE" listen 127.0.0.1:$port "$m" >/dev/null &
	fp=$!
	sleep 0.2
	expect 1 "$pat" -- "$FL" dest --insecure --source 127.0.0.1:$port --shim "$W/dst.shim" --status-dir "$W"
	wait $fp
done

# The other way round: a garbage destination at a real source is refused; the
# source keeps waiting for a real one until its accept deadline.
"$FL" source --insecure --listen 127.0.0.1:7360 --ram "$W/ram" --accept-timeout 2000 --status-dir "$W" \
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
# Two migrations never share an id: a running one's is refused.
"$FL" source --insecure --listen 127.0.0.1:7363 --ram "$W/ram" --accept-timeout 3000 --status-dir "$W" --id busy \
	>/dev/null 2>&1 &
bp=$!
for i in $(seq 50); do grep -q preparing "$W/busy.source.json" 2>/dev/null && break; sleep 0.05; done
expect 1 "migration 'busy' is already running on this host" -- "$FL" migrate --listen 127.0.0.1:7364 \
	--src-ram "$W/ram" --dst-shim "$W/nope.sock" --status-dir "$W" --id busy
kill $bp; wait $bp 2>/dev/null
# A source nobody connects to gives up with a clear message.
expect 1 "no destination connected" -- "$FL" source --insecure --listen 127.0.0.1:7361 --ram "$W/ram" \
	--accept-timeout 300 --status-dir "$W"
echo "PASS"
