#!/bin/bash
# Two hosts on one machine: two network namespaces joined by veth, each with
# its own mount namespace (its own /etc/faultline, /run/faultline,
# /var/lib/faultline) running its own faultlined with x509 credentials made
# here. A live guest-sim moves with one `faultline migrate NAME --to HOST`
# on the source host; both hosts list it, also after a daemon restart; the
# systemd unit passes systemd-analyze verify; a daemon without credentials,
# and a peer daemon with another CA's certificate, are refused in one line.
. "$(dirname "$0")/lib.sh"
need_root
workdir
command -v openssl >/dev/null || { echo "SKIP: no openssl command"; exit 77; }
command -v nsenter >/dev/null || { echo "SKIP: no nsenter"; exit 77; }
command -v systemd-analyze >/dev/null || fail "no systemd-analyze (scripts/install-deps installs systemd)"
two_hosts
fail() { echo "FAIL: $*"; echo "-- A's log"; tail -n 15 "$W/A.log" 2>/dev/null; echo "-- B's log"; tail -n 15 "$W/B.log" 2>/dev/null; exit 1; }
make_pki "$W/pki" "faultline two-host CA" "$IPA,$IPB"
make_pki "$W/rogue" "some other CA" "$IPA,$IPB"

fld_conf A $IPA "$W/pki"
fld_conf B $IPB "$W/pki"
fld A $A
fld B $B

# the systemd unit as make install writes it, its binary where it says
mkdir -p "$W/prefix/sbin" && ln -s "$FLD" "$W/prefix/sbin/faultlined"
sed "s|@SBINDIR@|$W/prefix/sbin|" "$TOP/daemon/faultlined.service" > "$W/faultlined.service"
# (its Documentation= names the man pages: here as make install puts them)
mkdir -p "$W/man/man5" "$W/man/man8"
ln -s "$TOP/man/faultlined.8" "$W/man/man8/"; ln -s "$TOP/man/faultlined.conf.5" "$W/man/man5/"
out=$(MANPATH=$W/man systemd-analyze verify "$W/faultlined.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
echo "ok: systemd-analyze verify faultlined.service"

# the VMs: a running guest-sim on A, its destination started and waiting on B
mkdir -p "$W/vmA" "$W/vmB"
ip netns exec $A env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/vmA/ FAULTLINE_SHIM_SOCK=$W/vmA.shim \
	"$SIM" --ram "$W/vmA/ram0" --ctl "$W/vmA.ctl" --size 64M --rate 3000 >/dev/null 2>&1 &
echo $! >> "$W/pids"
ip netns exec $B env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/vmB/ FAULTLINE_SHIM_SOCK=$W/vmB.shim \
	"$SIM" --ram "$W/vmB/ram0" --ctl "$W/vmB.ctl" --size 64M --incoming $IPB:7800 >/dev/null 2>&1 &
echo $! >> "$W/pids"
for i in $(seq 100); do [ -S "$W/vmA.ctl" ] && [ -S "$W/vmB.shim" ] && break; sleep 0.05; done
on A "$FL" vm add g1 --ctl "$W/vmA.ctl" --shim "$W/vmA.shim" || fail "vm add on A"
on B "$FL" vm add g1 --ctl "$W/vmB.ctl" --shim "$W/vmB.shim" --uri $IPB:7800 || fail "vm add on B"
on A "$FL" vm list | grep -q "^g1 " || fail "vm list on A lacks g1"
sleep 1	# the guest runs a while on A

# one command on the source host
on A "$FL" migrate g1 --to $IPB --json >"$W/mig.out" 2>"$W/mig.err" || {
	cat "$W/mig.err"; cat "$W/A.log" "$W/B.log"; fail "faultline migrate g1 --to $IPB failed"; }
cat "$W/mig.err"
id=$(jget id < "$W/mig.out")
line=$(cat "$W/A/lib/$id.result.json")
assert_migration "$line"
echo "ok: g1 moved from $IPA to $IPB with one command ($id)"
ip netns exec $A ss -ltn | grep -q ":7701 " && fail "a source agent listened on a port of its own"
grep -q "its links through $IPA:7700" "$W/A.log" || fail "the agents' links did not go through the daemon's port"
echo "ok: one port: the agents' links came through $IPA:7700 (routed by TLS server name)"

# both hosts know it, and still do after a restart
on A "$FL" list | grep -q "$id" || fail "faultline list on A lacks $id"
on B "$FL" list | grep -q "$id" || fail "faultline list on B lacks $id"
fld_restart B $B
on B "$FL" show "$id" | grep -q "completed" || fail "after a restart B does not show $id completed"
echo "ok: list/show on both hosts, and after B's daemon restarted"

# stopping: SIGTERM during pre-copy cancels (the guest stays on A); during
# post-copy the daemon refuses until told twice. B's pulls capped so each
# phase lasts.
fld_conf B $IPB "$W/pki" 0 40
fld_restart B $B
vm_pair g3 7803 100	# a slow writer: pre-copy lasts (a fast one is switched at once)
on A "$FL" migrate g3 --to $IPB >"$W/g3.out" 2>"$W/g3.err" &
cli=$!
for i in $(seq 200); do grep -q "progress: precopy" "$W/g3.err" && break; sleep 0.1; done
grep -q "progress: precopy" "$W/g3.err" || fail "g3 never reached pre-copy: $(cat "$W/g3.err")"
kill -TERM "$PA"
for i in $(seq 100); do kill -0 "$PA" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PA" 2>/dev/null && fail "faultlined on A did not stop on SIGTERM during pre-copy"
wait $cli && fail "the migration cut by SIGTERM reported success"
"$FL" vmctl "$W/g3A.ctl" query | grep -q '"state":"running"' || fail "g3 is not running on A after the abort"
grep -q "stopping: migrations still in pre-copy are cancelled" "$W/A.log" || fail "A did not say why it stopped"
echo "ok: SIGTERM in pre-copy: cancelled, g3 runs on A ($(grep -o 'cancelled[^"]*' "$W/A.log" | tail -n 1))"
fld A $A
# an operator on the destination host aborts; its daemon asks the source's
vm_pair g5 7805 100
on A "$FL" migrate g5 --to $IPB >"$W/g5.out" 2>"$W/g5.err" &
cli=$!
for i in $(seq 200); do grep -q "progress: precopy" "$W/g5.err" && break; sleep 0.1; done
grep -q "progress: precopy" "$W/g5.err" || fail "g5 never reached pre-copy: $(cat "$W/g5.err")"
id5=$(grep -o "migration g5-[^:]*" "$W/g5.err" | head -n 1 | cut -d' ' -f2)
[ -n "$id5" ] || fail "g5 did not start: $(cat "$W/g5.err")"
on B "$FL" abort "$id5" 2>"$W/abort.err" || fail "abort $id5 from the destination host failed: $(cat "$W/abort.err")"
wait $cli && fail "the migration aborted from B reported success"
"$FL" vmctl "$W/g5A.ctl" query | grep -q '"state":"running"' || fail "g5 is not running on A after the abort"
echo "ok: abort from the destination host: $(grep -i "cancel\|abort" "$W/g5.err" | tail -n 1)"
# force-complete from the destination host: pre-copy ends, post-copy finishes it
vm_pair g7 7807 100
on A "$FL" migrate g7 --to $IPB --json >"$W/g7.out" 2>"$W/g7.err" &
cli=$!
for i in $(seq 200); do grep -q "progress: precopy" "$W/g7.err" && break; sleep 0.1; done
id7=$(grep -o "migration g7-[^:]*" "$W/g7.err" | head -n 1 | cut -d' ' -f2)
on B "$FL" force-complete "$id7" 2>"$W/fc.err" || fail "force-complete $id7 from B failed: $(cat "$W/fc.err")"
wait $cli || fail "g7 after force-complete failed: $(cat "$W/g7.err")"
line=$(cat "$W/A/lib/$id7.result.json")
assert_migration "$line"
[ "$(echo "$line" | jget switch_reason)" = forced ] || fail "g7 switched for '$(echo "$line" | jget switch_reason)', not forced"
echo "ok: force-complete from the destination host: switch forced, completed"
fld_conf B $IPB "$W/pki" 40 0
fld_restart B $B
vm_pair g4 7804
on A "$FL" migrate g4 --to $IPB --no-precopy >"$W/g4.out" 2>"$W/g4.err" &
cli=$!
for i in $(seq 100); do grep -q "progress: postcopy" "$W/g4.err" && break; sleep 0.1; done
grep -q "progress: postcopy" "$W/g4.err" || fail "g4 never reached post-copy: $(cat "$W/g4.err")"
# while it runs: unauthenticated clients at A's port, a plain one (HELLO,
# page requests) and a TLS one naming the migration without a certificate
id4=$(grep -o "migration g4-[^:]*" "$W/g4.err" | head -n 1 | cut -d' ' -f2)
ip netns exec $B "$FAKE" connect $IPA:7700 channels 4 >/dev/null 2>&1 && fail "a plain client was served pages"
echo | ip netns exec $B timeout 5 openssl s_client -connect $IPA:7700 -servername "faultline.$id4" \
	-CAfile "$W/pki/ca-cert.pem" >/dev/null 2>&1
kill -TERM "$PA"
sleep 1
kill -0 "$PA" 2>/dev/null || fail "faultlined on A stopped during post-copy"
grep -q "not stopping: a migration is in post-copy" "$W/A.log" || fail "A did not say why it stays"
wait $cli || fail "the migration in post-copy failed: $(cat "$W/g4.err")"
assert_migration "$(cat "$W/A/lib/$id4.result.json")"
grep "refused" "$W/A.log" | grep -q "$IPB" || fail "A did not log the unauthenticated clients: $(cat "$W/A.log")"
echo "A logged: $(grep refused "$W/A.log" | grep "$IPB" | head -n 2 | tr '\n' ' ')"
[ "$(grep -c refused "$W/A.log")" -ge 2 ] || fail "A logged $(grep -c refused "$W/A.log") refusals, want 2"
echo "ok: SIGTERM in post-copy refused ($(grep -o 'not stopping[^;]*' "$W/A.log" | head -n 1)); g4 completed"
fld_conf B $IPB "$W/pki"
fld_restart B $B

# found by convention, not registered: run_dir/vms/NAME.shim with .ctl (and .uri)
mkdir -p "$W/g6A" "$W/g6B" "$W/A/run/vms" "$W/B/run/vms"
ip netns exec $A env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/g6A/ FAULTLINE_SHIM_SOCK=$W/A/run/vms/g6.shim \
	"$SIM" --ram "$W/g6A/ram0" --ctl "$W/A/run/vms/g6.ctl" --size 64M --rate 3000 >/dev/null 2>&1 &
echo $! >> "$W/pids"
ip netns exec $B env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/g6B/ FAULTLINE_SHIM_SOCK=$W/B/run/vms/g6.shim \
	"$SIM" --ram "$W/g6B/ram0" --ctl "$W/B/run/vms/g6.ctl" --size 64M --incoming $IPB:7806 >/dev/null 2>&1 &
echo $! >> "$W/pids"
echo "$IPB:7806" > "$W/B/run/vms/g6.uri"
for i in $(seq 100); do [ -S "$W/A/run/vms/g6.ctl" ] && [ -S "$W/B/run/vms/g6.shim" ] && break; sleep 0.05; done
on B "$FL" vm list | grep -q "^g6 .*incoming" || fail "B does not list g6 found by convention: $(on B "$FL" vm list)"
on A "$FL" migrate g6 --to $IPB --json >"$W/g6.out" 2>"$W/g6.err" || fail "g6 by convention: $(cat "$W/g6.err")"
assert_migration "$(cat "$W/A/lib/$(jget id < "$W/g6.out").result.json")"
echo "ok: g6 found by convention in /run/faultline/vms on both hosts, migrated"

# refusals: a VM B does not wait for; a daemon with another CA's certificate
on A "$FL" migrate nosuch --to $IPB 2>"$W/e1" && fail "migrating an unknown VM succeeded"
grep -q "no VM named nosuch" "$W/e1" || fail "unknown VM said: $(cat "$W/e1")"
echo "unknown VM: $(cat "$W/e1")"
# a peer daemon of another release, with good credentials: refused naming
# both daemon protocols and releases (0.1 sent no protocol at all)
peer_raw() {
	(printf '%s\n' "$1"; sleep 2) | ip netns exec $A timeout 10 openssl s_client -quiet -connect $IPB:7700 \
		-cert "$W/pki/client-cert.pem" -key "$W/pki/client-key.pem" -CAfile "$W/pki/ca-cert.pem" 2>/dev/null
}
ver=$("$FLD" --version | head -n1 | cut -d' ' -f2)
ans=$(peer_raw '{"op":"probe","vm":"g1","proto":9,"faultline":"9.9.9"}')
echo "$ans" | grep -q "the peer's faultlined speaks daemon protocol 9 (faultline 9.9.9), this host 1 (faultline $ver)" ||
	fail "a peer of daemon protocol 9 was answered: $ans"
ans=$(peer_raw '{"op":"probe","vm":"g1"}')
echo "$ans" | grep -q "says no daemon protocol (faultline 0.1), this host speaks 1 (faultline $ver)" ||
	fail "a 0.1 peer was answered: $ans"
echo "$ans" | grep -q '"proto": *1' || fail "the refusal does not say our protocol: $ans"
grep -q "speaks daemon protocol 9" "$W/B.log" || fail "B did not log the peer of another protocol"
echo "ok: peers of another daemon protocol refused: $(echo "$ans" | head -c 200)"
# ... and an old daemon's answer (no protocol in it) is refused by the asker,
# whether it served the request or refused it in its own words
(sleep 1.5; printf '{"ok":false,"error":"no VM named g1"}\n'; sleep 3) | ip netns exec $B timeout 15 openssl s_server \
	-quiet -naccept 1 -accept $IPB:7790 -cert "$W/pki/server-cert.pem" -key "$W/pki/server-key.pem" \
	-CAfile "$W/pki/ca-cert.pem" -Verify 1 >/dev/null 2>&1 &
old=$!
sleep 0.5
on A "$FL" migrate g1 --to $IPB:7790 2>"$W/eold" && fail "a migration to a daemon of no protocol went on"
grep -q "daemon at $IPB:7790: answer: the peer's faultlined says no daemon protocol (faultline 0.1)" "$W/eold" ||
	fail "the old daemon's answer was taken: $(cat "$W/eold")"
wait $old
echo "ok: an old daemon's answer refused: $(cat "$W/eold")"

fld_conf C $IPA "$W/rogue"
kill "$PA"; wait "$PA" 2>/dev/null
fld C $A
PA=$PC
on A "$FL" vm add g2 --ctl "$W/vmA.ctl" --shim "$W/vmA.shim" || fail "vm add on the rogue A"
on A "$FL" migrate g2 --to $IPB 2>"$W/e2" && fail "a daemon with another CA's certificate migrated"
grep -q "not signed by our CA" "$W/e2" || fail "the rogue daemon was told: $(cat "$W/e2")"
grep -q "refused $IPA" "$W/B.log" || fail "B did not log the rogue peer: $(cat "$W/B.log")"
echo "rogue daemon: $(cat "$W/e2")"
echo "B logged: $(grep "refused $IPA" "$W/B.log" | tail -n 1)"

# no credentials: one line, nonzero
mkdir -p "$W/bare"; printf '[daemon]\nlisten = 127.0.0.1:7709\nrun_dir = %s/bare\nstate_dir = %s/bare\n' "$W" "$W" > "$W/bare/c.conf"
expect 1 "no credentials in $W/bare/c.conf: set x509_dir or psk_file in \[tls\]" -- "$FLD" --config "$W/bare/c.conf"
echo "PASS"
