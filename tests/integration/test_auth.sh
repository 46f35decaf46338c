#!/bin/bash
# Nobody unproven gets a byte of guest RAM: the agents' links with x509
# (QEMU's and libvirt's layout, certificates made here with openssl) and with
# a pre-shared key. Unauthenticated clients sending HELLO and page requests
# are refused and logged and the migration completes with identical RAM; a
# certificate from another CA, an expired one, none at all, a wrong key,
# no credentials and --insecure off a test network each end in one clear
# line, RAM untouched.
. "$(dirname "$0")/lib.sh"
workdir
command -v openssl >/dev/null || { echo "SKIP: no openssl command"; exit 77; }
head -c 4M /dev/urandom > "$W/ram0"
trap 'kill $(cat "$W/pids" 2>/dev/null) $sp 2>/dev/null; rm -rf "$W"' EXIT

# --- credentials: CA A (server and client, an expired client), CA B
make_pki "$W/pki" "faultline test CA A" 127.0.0.1
make_pki "$W/other" "faultline test CA B" 127.0.0.1
mkdir -p "$W/expired"; cp "$W/pki/ca-cert.pem" "$W/pki/ca-key.pem" "$W/expired/"
cp "$W/pki/server-"* "$W/expired/"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/expired/client-key.pem" \
	-out "$W/expired/c.csr" -subj /CN=client 2>/dev/null
openssl x509 -req -in "$W/expired/c.csr" -CA "$W/pki/ca-cert.pem" -CAkey "$W/pki/ca-key.pem" \
	-CAcreateserial -out "$W/expired/client-cert.pem" -days -1 2>/dev/null || fail "openssl: expired cert"
printf 'faultline:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$W/keys.psk"
printf 'faultline:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$W/wrong.psk"
chmod 600 "$W/keys.psk" "$W/wrong.psk"

src() {	# src PORT CRED...: a source serving $W/ram0, stderr in $W/src.err
	local port=$1; shift
	"$FL" source --listen 127.0.0.1:$port --ram "$W/ram0" --accept-timeout 20000 \
		--handshake-timeout 1000 --status-dir "$W" --json "$@" >"$W/src.out" 2>"$W/src.err" &
	sp=$!
	for i in $(seq 50); do ss -ltn | grep -q ":$port " && break; sleep 0.05; done
}
incoming() {	# incoming NAME: a destination guest-sim whose RAM file is $W/NAME/ram0
	mkdir -p "$W/$1"
	[ -e "$W/$1/ram0" ] || head -c 4M /dev/urandom > "$W/$1/ram0"	# what it held before
	sha256sum < "$W/$1/ram0" > "$W/$1.before"
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/$1/ FAULTLINE_SHIM_SOCK=$W/$1.shim \
		"$SIM" --ram "$W/$1/ram0" --ctl "$W/$1.ctl" --size 4M --incoming 127.0.0.1:0 >/dev/null 2>&1 &
	echo $! >> "$W/pids"
	for i in $(seq 50); do [ -S "$W/$1.shim" ] && break; sleep 0.1; done
	[ -S "$W/$1.shim" ] || fail "destination guest-sim $1 did not start"
}
same_ram() { [ "$(sha256sum < "$W/ram0")" = "$(sha256sum < "$W/$1/ram0")" ]; }

# 1. x509: unauthenticated peers first (a HELLO and page requests, a HELLO
# of another protocol version, a TLS client with no certificate, one with a
# certificate from another CA, an expired one): each refused and logged;
# then the real destination migrates.
src 7421 --tls-dir "$W/pki"
"$FAKE" connect 127.0.0.1:7421 channels 4 >"$W/fake.out" 2>&1 && fail "an unauthenticated client was served pages"
"$FAKE" connect 127.0.0.1:7421 version >/dev/null 2>&1
echo | timeout 5 openssl s_client -connect 127.0.0.1:7421 -CAfile "$W/pki/ca-cert.pem" >/dev/null 2>&1
incoming bad1
"$FL" dest --source 127.0.0.1:7421 --shim "$W/bad1.shim" --tls-dir "$W/other" --status-dir "$W" \
	>/dev/null 2>"$W/other.err" && fail "a destination with another CA's certificate migrated"
incoming bad2
"$FL" dest --source 127.0.0.1:7421 --shim "$W/bad2.shim" --tls-dir "$W/expired" --status-dir "$W" \
	>/dev/null 2>"$W/expired.err" && fail "a destination with an expired certificate migrated"
incoming d1
"$FL" dest --source 127.0.0.1:7421 --shim "$W/d1.shim" --tls-dir "$W/pki" --status-dir "$W" >"$W/d1.out" 2>"$W/d1.err" ||
	fail "the authenticated destination failed: $(cat "$W/d1.err")"
wait $sp || fail "source failed: $(cat "$W/src.err")"
echo "source log:"; sed 's/^/    /' "$W/src.err"
echo "destination with CA B's certificate: $(tail -n 1 "$W/other.err")"
echo "destination with an expired certificate: $(tail -n 1 "$W/expired.err")"
[ "$(grep -c refused "$W/src.err")" -ge 5 ] || fail "the source logged $(grep -c refused "$W/src.err") refusals, want 5"
grep -q "refused 127.0.0.1:[0-9]*: TLS handshake with a client: not a TLS peer" "$W/src.err" || fail "plain clients not logged"
grep -q "the source refused us after the TLS handshake (.*certificate expired)" "$W/expired.err" ||
	fail "the expired certificate's destination was not told why: $(cat "$W/expired.err")"
grep -q "peer did not return a certificate\|certificate required" "$W/src.err" || fail "a client without a certificate was not named as such"
grep -q "certificate has expired" "$W/src.err" || fail "the expired certificate was not named"
grep -q "peer certificate rejected: not signed by our CA" "$W/other.err" ||
	fail "another CA's server was not named as such: $(cat "$W/other.err")"
grep -q '"rejected_peers":[5-9]' "$W/src.out" || fail "the report does not count the refused peers"
same_ram d1 || fail "destination RAM differs from the source"
for v in bad1 bad2; do [ "$(sha256sum < "$W/$v/ram0")" = "$(cat "$W/$v.before")" ] ||
	fail "a refused destination's RAM was touched ($v)"; done
echo "ok: x509: 5 unauthenticated or unproven peers refused and logged; the real destination migrated (RAM identical)"

# 2. Pre-shared key, data channels authenticated but in clear; then a wrong key.
src 7422 --psk-file "$W/keys.psk" --no-encrypt-data
incoming bad3
"$FL" dest --source 127.0.0.1:7422 --shim "$W/bad3.shim" --psk-file "$W/wrong.psk" --status-dir "$W" \
	>/dev/null 2>"$W/wrong.err" && fail "a destination with the wrong key migrated"
grep -q "pre-shared key rejected" "$W/wrong.err" || fail "wrong key said: $(cat "$W/wrong.err")"
[ "$(sha256sum < "$W/bad3/ram0")" = "$(cat "$W/bad3.before")" ] || fail "the wrong key's destination RAM was touched"
incoming d2
"$FL" dest --source 127.0.0.1:7422 --shim "$W/d2.shim" --psk-file "$W/keys.psk" --no-encrypt-data --status-dir "$W" \
	>/dev/null 2>"$W/d2.err" || fail "the PSK destination failed: $(cat "$W/d2.err")"
wait $sp || fail "source failed: $(cat "$W/src.err")"
same_ram d2 || fail "destination RAM differs from the source (PSK, data in clear)"
echo "wrong key: $(tail -n 1 "$W/wrong.err")"
echo "ok: pre-shared key (data channels authenticated, in clear); a wrong key refused"

# 3. No credentials, and --insecure off a test network: refused before anything starts.
expect 1 "no credentials for the link to the peer: give an x509 directory (--tls-dir) or a pre-shared key file" -- \
	"$FL" source --listen 127.0.0.1:7423 --ram "$W/ram0" --status-dir "$W"
if [ "$(stat -Lc %i /proc/self/ns/net)" = 4026531833 ]; then	# the initial network namespace
	expect 1 "--insecure refused for 0.0.0.0:7424: it is only for tests" -- \
		"$FL" source --insecure --listen 0.0.0.0:7424 --ram "$W/ram0" --status-dir "$W"
fi
chmod 644 "$W/keys.psk"
expect 1 "is readable by others" -- "$FL" source --listen 127.0.0.1:7425 --ram "$W/ram0" --psk-file "$W/keys.psk" --status-dir "$W"
echo "PASS"
