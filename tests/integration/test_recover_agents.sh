#!/bin/bash
# Agents that die: kill -9 of the source agent and of the destination agent,
# each during pre-copy and during post-copy, on a capped link (100 Mbit/s).
# Before the switch the VM never stopped on the source and the destination
# was never served: the migration starts over (attempts 2). After it, the
# controller starts another agent that takes over: the shim hands the VM's
# userfaultfd over again, the restart file proves the migration, a new
# destination agent finds what is present in the RAM files, a new source
# agent maps them again. Every case ends completed, the guest's self-check
# clean, the RAM checksum equal to the source's at switchover, each page
# placed once; the guest's longest stall is printed.
. "$(dirname "$0")/lib.sh"
need_root
workdir

# run NAME WHO PHASE [demo options]: kill WHO (src|dst) once PHASE is seen
run() {
	local name=$1 who=$2 phase=$3; shift 3
	rm -rf "$W/st"
	"$FL" demo --json --size 256M --rate-limit 100mbit --warmup 1 --workdir "$W/run" --status-dir "$W/st" \
		--id "kill-$name" "$@" >"$W/out" 2>"$W/err" &
	local pid=$! victim="" seen=""
	for i in $(seq 600); do
		grep -qs "\"state\":\"$phase\"" "$W/st/kill-$name.dest.json" && break
		sleep 0.05
	done
	sleep 0.3
	seen=$(sed -n 's/.*"state":"\([a-z-]*\)".*/\1/p' "$W/st/kill-$name.dest.json")
	for c in $(pgrep -P $pid); do	# the agent, not the VM beside it
		[ "$(ip netns identify "$c")" = "fl-$pid-$who" ] && [ "$(cat /proc/$c/comm)" = faultline ] && victim=$c
	done
	[ -n "$victim" ] || { kill $pid; fail "$name: no $who agent to kill"; }
	kill -9 "$victim"
	wait $pid; local rc=$?
	line=$(tail -n 1 "$W/out")
	[ $rc = 0 ] || { tail -n 15 "$W/err"; fail "$name: faultline demo exited $rc"; }
	assert_migration "$line"
	echo "$name: $who agent killed in $seen: attempts=$(echo "$line" | jget attempts)" \
	     "restarts=$(echo "$line" | jget restarts)/$(echo "$line" | jget source_restarts)" \
	     "recoveries=$(echo "$line" | jget recoveries) guest max stall $(echo "$line" | jget max_stall_ms) ms"
	case $seen in
	precopy) [ "$(echo "$line" | jget attempts)" = 2 ] || fail "$name: killed in pre-copy, not started over" ;;
	postcopy)
		[ "$(echo "$line" | jget recoveries)" -ge 1 ] || fail "$name: no recovery after the kill"
		grep -q "takes over" "$W/err" || fail "$name: no agent took over" ;;
	*) fail "$name: the kill landed in '$seen', not $phase (machine too slow?)" ;;
	esac
}

# pre-copy lasts ~20 s at 100 Mbit/s with a slow writer; post-copy ~20 s without it
run dst-pre dst precopy --vcpu-rate 500
run src-pre src precopy --vcpu-rate 500
run dst-post dst postcopy --no-precopy
run src-post src postcopy --no-precopy
echo "PASS"
