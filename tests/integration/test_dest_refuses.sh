#!/bin/bash
# A destination agent writes, punches or registers nothing until the shim
# vouches that the VM is an untouched incoming migration and the source has
# answered its HELLO. Every failure says where the guest really is.
. "$(dirname "$0")/lib.sh"
workdir
trap 'kill $(cat "$W/pids" 2>/dev/null) 2>/dev/null; rm -rf "$W"' EXIT
memory() { "$FL" shim-info "$W/$1.shim" | sed -n 's/.*"memory":"\([^"]*\)".*/\1/p'; }

# 1. A pristine destination, unreachable source: RAM untouched, still untouched.
mkdir -p "$W/d1"; head -c 8M /dev/urandom > "$W/d1/ram0"
sim_vm d1 8M --incoming 127.0.0.1:7511
before=$(sha256sum < "$W/d1/ram0")
"$FL" dest --insecure --source 127.0.0.1:1 --shim "$W/d1.shim" --connect-timeout 300 --status-dir "$W" 2>"$W/err" &&
	fail "dest succeeded with no source"
grep -q "cannot connect to 127.0.0.1:1" "$W/err" || fail "said: $(cat "$W/err")"
[ "$before" = "$(sha256sum < "$W/d1/ram0")" ] || fail "RAM file changed although no source answered"
[ "$(memory d1)" = untouched ] || fail "shim says the memory is '$(memory d1)'"
echo "ok: unreachable source: RAM untouched, VM still an untouched incoming migration"

# 2. The source answers but preflight refuses after the claim: released
# untouched, so the same VM then migrates for real.
sim_vm s1 8M
"$FL" migrate --json --listen 127.0.0.1:7512 --src-shim "$W/s1.shim" --dst-shim "$W/d1.shim" \
	--vm-ctl "$W/s1.ctl" --vm-uri 127.0.0.1:7511 --dst-vm-ctl "$W/d1.ctl" --guest-cpus 4000 \
	--status-dir "$W" >/dev/null 2>"$W/err" && fail "migrate passed a preflight that must refuse"
grep -q "preflight" "$W/err" || fail "said: $(cat "$W/err")"
[ "$(memory d1)" = untouched ] || fail "after a refused preflight the memory is '$(memory d1)'"
line=$("$FL" migrate --json --listen 127.0.0.1:7512 --src-shim "$W/s1.shim" --dst-shim "$W/d1.shim" \
	--vm-ctl "$W/s1.ctl" --vm-uri 127.0.0.1:7511 --dst-vm-ctl "$W/d1.ctl" --status-dir "$W" 2>"$W/err" |
	tail -n 1) || fail "migration to the released VM failed: $(tail -n 3 "$W/err")"
assert_migration "$line"
[ "$(memory d1)" = "migrated in (complete)" ] || fail "after completion the memory is '$(memory d1)'"
echo "ok: preflight refusal released the VM untouched; it then migrated"

# 3. The completed destination runs the guest: a stray agent pointed at it is
# refused before it can punch anything (it used to empty the RAM file and
# leave two thirds of the guest's pages corrupt).
"$FL" dest --insecure --source 127.0.0.1:1 --shim "$W/d1.shim" --status-dir "$W" 2>"$W/err" && fail "stray dest succeeded"
grep -q "not an untouched incoming migration" "$W/err" || fail "said: $(cat "$W/err")"
sleep 0.5
v=$("$FL" vmctl "$W/d1.ctl" verify) || fail "guest self-check failed: $v"
c=$(echo "$v" | jget corrupt_pages); r=$(echo "$v" | jget corrupt_reads)
[ "$c" = 0 ] && [ "$r" = 0 ] || fail "the running guest found corrupt pages ($c, reads $r): $v"
echo "ok: stray agent refused ($(head -n 1 "$W/err" | cut -c1-90)...); guest self-check clean"

# 4. The old source, paused after that switchover: a retry from it is refused
# up front and says where the guest is.
sim_vm d2 8M --incoming 127.0.0.1:7513
"$FL" migrate --listen 127.0.0.1:7514 --src-shim "$W/s1.shim" --dst-shim "$W/d2.shim" \
	--vm-ctl "$W/s1.ctl" --vm-uri 127.0.0.1:7513 --dst-vm-ctl "$W/d2.ctl" --status-dir "$W" \
	>/dev/null 2>"$W/err" && fail "migrating a stale source succeeded"
grep -q "paused after an earlier switchover" "$W/err" || fail "said: $(cat "$W/err")"
grep -q "keeps running on the source" "$W/err" && fail "claims the stale source runs: $(cat "$W/err")"
[ "$(memory d2)" = untouched ] || fail "the new destination was touched: '$(memory d2)'"
echo "ok: stale source refused: $(grep -m1 'paused after' "$W/err" | cut -c1-120)..."

# 5. A post-copy that fails (destination agent killed, recovery off: with it
# another agent takes over, test_recover_agents) leaves the destination
# served-but-incomplete: a fresh start there is refused, RAM left as it is.
sim_vm s3 512M --vcpus 2
sim_vm d3 512M --incoming 127.0.0.1:7515
"$FL" migrate --listen 127.0.0.1:7516 --src-shim "$W/s3.shim" --dst-shim "$W/d3.shim" --no-precopy \
	--recover-timeout 0 \
	--vm-ctl "$W/s3.ctl" --vm-uri 127.0.0.1:7515 --dst-vm-ctl "$W/d3.ctl" --status-dir "$W" --id killme \
	>/dev/null 2>"$W/err3" &
mp=$!
for i in $(seq 400); do
	grep -q '"state":"postcopy"' "$W/killme.dest.json" 2>/dev/null && break; sleep 0.01
done
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$W/killme.dest.json")
kill -9 "$pid" || fail "could not kill the destination agent"
wait $mp && fail "migrate succeeded with its destination agent killed"
grep -q "paused here\|stays paused" "$W/err3" || fail "source side said: $(cat "$W/err3")"
[ "$(memory d3)" = "served by an agent that did not complete" ] || fail "memory is '$(memory d3)'"
"$FL" dest --insecure --source 127.0.0.1:7516 --shim "$W/d3.shim" --status-dir "$W" 2>"$W/err" && fail "retry succeeded"
grep -q "not an untouched incoming migration" "$W/err" || fail "retry said: $(cat "$W/err")"
echo "ok: after a failed post-copy: $(grep -m1 'faultline migrate: failed' "$W/err3" | cut -c1-140)"
echo "ok: retry refused: $(head -n 1 "$W/err" | cut -c1-120)"
echo "PASS"
