#!/bin/bash
# Two hosts, two faultlined (as test_daemons.sh), a guest-sim moving with
# `faultline migrate NAME --to HOST` in pure post-copy, the destination's
# pull capped so post-copy lasts. Mid-post-copy:
#  1. the destination's daemon is killed (kill -9) and started again: it
#     takes the migration back from its record (ends the orphaned agent,
#     starts one that takes over the guest's userfaultfd from the shim);
#  2. the destination agent is killed: its daemon starts one that takes over;
#  3. the source agent is killed: the source's daemon starts one that maps
#     the paused VM's RAM files again;
#  4. the source's daemon is killed: its agent goes on without it (the
#     destination's links still reach it through the port, routed to its
#     socket by a restarted daemon); the operator's command loses its
#     daemon, the destination completes.
# Each completes: the guest's self-check clean, the RAM checksum equal to
# the source's at switchover, each page placed once.
. "$(dirname "$0")/lib.sh"
need_root
workdir
command -v openssl >/dev/null || { echo "SKIP: no openssl command"; exit 77; }
command -v nsenter >/dev/null || { echo "SKIP: no nsenter"; exit 77; }
two_hosts
fail() { echo "FAIL: $*"; echo "-- A's log"; tail -n 15 "$W/A.log" 2>/dev/null; echo "-- B's log"; tail -n 15 "$W/B.log" 2>/dev/null; exit 1; }
make_pki "$W/pki" "faultline two-host CA" "$IPA,$IPB"

# start NAME PORT: the migration in the background, until it is in post-copy
start() {
	vm_pair "$1" "$2" 3000 128M
	sleep 0.5
	on A "$FL" migrate "$1" --to $IPB --no-precopy --json >"$W/$1.out" 2>"$W/$1.err" &
	cli=$!
	for i in $(seq 200); do grep -q "progress: postcopy" "$W/$1.err" && break; sleep 0.1; done
	grep -q "progress: postcopy" "$W/$1.err" || fail "$1 never reached post-copy: $(cat "$W/$1.err")"
	mid=$(grep -o "migration $1-[^:]*" "$W/$1.err" | head -n 1 | cut -d' ' -f2)
	[ -n "$mid" ] || fail "$1: no migration id in $(cat "$W/$1.err")"
	sleep 1
}
finish() {	# finish NAME WHAT
	wait $cli || fail "$1 ($2) failed: $(tail -n 5 "$W/$1.err")"
	line=$(cat "$W/A/lib/$mid.result.json")
	assert_migration "$line"
	echo "ok: $2: completed; recoveries $(echo "$line" | jget recoveries), restarts" \
		"$(echo "$line" | jget restarts)/$(echo "$line" | jget source_restarts), guest max stall" \
		"$(echo "$line" | jget max_stall_ms) ms"
}
agent_pid() {	# agent_pid HOSTDIR ROLE: from the agent's status file
	sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$W/$1/lib/$mid.$2.json"
}

fld_conf A $IPA "$W/pki"
fld_conf B $IPB "$W/pki" 100 0	# B's pull at 100 Mbit/s: 128 MiB in ~10 s
fld A $A
fld B $B

# 1. the destination's daemon killed and started again
start r1 7821
kill -9 "$PB"
wait "$PB" 2>/dev/null
sleep 1
fld B $B
for i in $(seq 100); do grep -q "taken back after a restart" "$W/B.log" && break; sleep 0.1; done
grep -q "taken back after a restart" "$W/B.log" || fail "B did not take r1 back: $(tail -n 5 "$W/B.log")"
finish r1 "destination daemon killed in post-copy and restarted"

# 2. the destination agent killed: its daemon replaces it
start r2 7822
kill -9 "$(agent_pid B dest)" || fail "no destination agent to kill"
finish r2 "destination agent killed in post-copy"
grep -q "its agent died in post-copy" "$W/B.log" || fail "B did not replace the agent"

# 3. the source agent killed: the source's daemon replaces it
start r3 7823
kill -9 "$(agent_pid A source)" || fail "no source agent to kill"
finish r3 "source agent killed in post-copy"

# 4. the source's daemon killed: the migration finishes without it
start r4 7824
kill -9 "$PA"
wait "$PA" 2>/dev/null
fld A $A
wait $cli && fail "r4: the operator's command did not notice its daemon died"
for i in $(seq 300); do grep -q "incoming migration $mid of r4: completed" "$W/B.log" && break; sleep 0.1; done
grep -q "incoming migration $mid of r4: completed" "$W/B.log" || fail "r4 did not complete on B"
v=$("$FL" vmctl "$W/r4B.ctl" verify)
[ "$(echo "$v" | jget corrupt_pages)" = 0 ] && [ "$(echo "$v" | jget corrupt_reads)" = 0 ] ||
	fail "r4: the guest found corruption: $v"
[ "$(echo "$v" | jget sha256_switchover)" = "$(sha256sum < "$W/r4A/ram0" | cut -d' ' -f1)" ] ||
	fail "r4: the destination's RAM at the switch differs from the source's"
echo "ok: source daemon killed in post-copy: the destination completed; guest self-check clean, RAM as the source's"
echo "PASS"
