#!/bin/bash
# Peers that are silent, wrong or lying: every read has a deadline, a wrong
# HELLO costs the source nothing but that connection, ERROR frames are
# decoded one way, and data-channel slots come back.
. "$(dirname "$0")/lib.sh"
workdir
head -c 4M /dev/urandom > "$W/ram0"
src() {	# src PORT: a source serving $W/ram0, stderr in $W/src.err
	"$FL" source --insecure --listen 127.0.0.1:$1 --ram "$W/ram0" --accept-timeout 20000 \
		--handshake-timeout 1000 --status-dir "$W" --json >"$W/src.out" 2>"$W/src.err" &
	sp=$!
	for i in $(seq 50); do ss -ltn | grep -q ":$1 " && break; sleep 0.05; done
}
incoming() {	# incoming NAME: a destination guest-sim whose RAM file is $W/NAME/ram0
	mkdir -p "$W/$1"
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/$1/ FAULTLINE_SHIM_SOCK=$W/$1.shim \
		"$SIM" --ram "$W/$1/ram0" --ctl "$W/$1.ctl" --size 4M --incoming 127.0.0.1:0 >/dev/null 2>&1 &
	echo $! >> "$W/pids"
	for i in $(seq 50); do [ -S "$W/$1.shim" ] && break; sleep 0.1; done
	[ -S "$W/$1.shim" ] || fail "destination guest-sim $1 did not start"
}
trap 'kill $(cat "$W/pids" 2>/dev/null) $sp 2>/dev/null; rm -rf "$W"' EXIT

# 1. A silent connection, a wrong protocol version and another VM's table
# reach the source first; the real destination after them still migrates.
src 7401
"$FAKE" connect 127.0.0.1:7401 silent & echo $! >> "$W/pids"
sleep 0.2
"$FAKE" connect 127.0.0.1:7401 version
"$FAKE" connect 127.0.0.1:7401 badtable 4
incoming d1
"$FL" dest --insecure --source 127.0.0.1:7401 --shim "$W/d1.shim" --status-dir "$W" >"$W/d1.out" 2>"$W/d1.err" ||
	fail "destination after hostile peers failed: $(cat "$W/d1.err")"
wait $sp || fail "source failed: $(cat "$W/src.err")"
refused=$(grep -c "refused" "$W/src.err")
echo "source refused $refused peers:"; sed 's/^/    /' "$W/src.err" | grep refused
[ "$refused" -ge 3 ] || fail "source refused $refused peers, want 3 (silent, version, table)"
grep -q "sent nothing" "$W/src.err" || fail "the silent peer was not cut off by the deadline"
grep -q "peer speaks faultline protocol 9 (faultline 9.9.9), this host protocol 2" "$W/src.err" ||
	fail "the wrong version is not named with both sides' versions"
grep -q "does not exist on the source (source regions: ram0)" "$W/src.err" ||
	fail "the wrong table is not named with both sides' regions"
[ "$(sha256sum < "$W/ram0")" = "$(sha256sum < "$W/d1/ram0")" ] || fail "destination RAM differs from the source"
grep -q '"rejected_peers":3' "$W/src.out" || fail "report does not count the refused peers: $(cat "$W/src.out")"
echo "ok: silent, wrong-version and wrong-table peers refused; the real destination migrated (RAM identical)"

# 2. A source that accepts and says nothing: the destination gives up at its
# deadline, and the VM's RAM is untouched.
"$FAKE" listen 127.0.0.1:7402 silent >/dev/null & echo $! >> "$W/pids"
mkdir -p "$W/d2"; head -c 4M /dev/urandom > "$W/d2/ram0"
incoming d2
before=$(sha256sum < "$W/d2/ram0")
t0=$(date +%s%N)
"$FL" dest --insecure --source 127.0.0.1:7402 --shim "$W/d2.shim" --handshake-timeout 1000 --status-dir "$W" \
	>/dev/null 2>"$W/d2.err" && fail "destination succeeded against a silent source"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "sent nothing for 1000 ms while we waited for the source's hello" "$W/d2.err" ||
	fail "destination said: $(cat "$W/d2.err")"
[ "$ms" -lt 8000 ] || fail "destination took $ms ms to give up"
[ "$before" = "$(sha256sum < "$W/d2/ram0")" ] || fail "the destination touched the VM's RAM before the source answered"
echo "ok: silent source: $(head -n 1 "$W/d2.err") (${ms} ms), RAM untouched"

# 3. An ERROR frame that lies about its length is reported as malformed,
# never as whatever was on the stack.
src 7403
"$FAKE" connect 127.0.0.1:7403 badrerror 4
wait $sp && fail "source succeeded after a malformed ERROR"
grep -q "(malformed ERROR frame)" "$W/src.err" || fail "source said: $(cat "$W/src.err")"
echo "ok: $(grep -m1 malformed "$W/src.err")"

# 4. Channels opened and closed over a run free their slots (there are 64);
# a request for zero pages is named as that.
src 7404
"$FAKE" connect 127.0.0.1:7404 channels 80 > "$W/ch.out" || fail "$(cat "$W/ch.out")"
cat "$W/ch.out"
grep -q "channels ok: 81" "$W/ch.out" || fail "data-channel slots ran out"
grep -q "zero pages: read request or reply for zero pages" "$W/ch.out" || fail "zero-page request misnamed"
kill $sp 2>/dev/null; wait $sp 2>/dev/null
echo "PASS"
