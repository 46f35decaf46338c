#!/bin/bash
# Post-copy that survives the link: a guest-sim VM migrating over a capped
# link (100 Mbit/s, so post-copy lasts ~20 s) loses it mid-post-copy: the
# veth down for 5 s and for 60 s, and the data port dropped by iptables for
# 10 s. Both ends pause (postcopy-paused), the destination reconnects with
# backoff and post-copy resumes: every case must end completed, the guest's
# self-check clean, the RAM checksum equal to the source's at switchover,
# each page placed once. The guest's longest stall and the time from the
# resume to the first fault answered are printed for each.
. "$(dirname "$0")/lib.sh"
need_root
command -v iptables >/dev/null || { echo "SKIP: iptables missing (scripts/install-deps installs it)"; exit 77; }
workdir

# run NAME DOWN_S HOW: HOW = link (veth down) | drop (iptables on port 7000)
run() {
	local name=$1 down=$2 how=$3
	rm -rf "$W/st"
	"$FL" demo --json --size 256M --rate-limit 100mbit --no-precopy --warmup 1 --workdir "$W/run" \
		--status-dir "$W/st" --id "rec-$name" >"$W/out" 2>"$W/err" &
	local pid=$! ns_dst="fl-$!-dst" dev="fld$!"
	wait_state "rec-$name" postcopy "$W/st" || { kill $pid; fail "$name: never reached post-copy: $(tail -n 5 "$W/err")"; }
	sleep 1	# faults and the pull in flight
	case $how in
	link) ip -n "$ns_dst" link set "$dev" down ;;
	drop) ip netns exec "$ns_dst" iptables -A OUTPUT -p tcp --dport 7000 -j DROP &&
	      ip netns exec "$ns_dst" iptables -A INPUT -p tcp --sport 7000 -j DROP ;;
	esac
	# paused, on the destination's word, while the link is down
	local seen=""
	for i in $(seq $((down * 10))); do
		grep -qs '"state":"postcopy-paused"\|"state":"postcopy-recover"' "$W/st/rec-$name.dest.json" && seen=1
		sleep 0.1
	done
	case $how in
	link) ip -n "$ns_dst" link set "$dev" up ;;
	drop) ip netns exec "$ns_dst" iptables -F ;;
	esac
	wait $pid; local rc=$?
	line=$(tail -n 1 "$W/out")
	[ $rc = 0 ] || { tail -n 15 "$W/err"; fail "$name: faultline demo exited $rc"; }
	assert_migration "$line"
	local rec=$(echo "$line" | jget recoveries)
	echo "$name: down ${down}s by $how: recoveries=${rec:-0} paused_max_ms=$(echo "$line" | jget paused_max_ms)" \
	     "resume_to_fault_ms=$(echo "$line" | jget resume_to_fault_ms) guest max stall $(echo "$line" | jget max_stall_ms) ms"
	[ "$down" -lt 10 ] || [ "${rec:-0}" -ge 1 ] || fail "$name: a ${down} s outage with no recovery"
	[ "$down" -lt 10 ] || [ -n "$seen" ] || fail "$name: the destination never showed postcopy-paused"
	grep -q "post-copy paused" "$W/err" || [ "$down" -lt 10 ] || fail "$name: no pause logged"
}

run link5 5 link
run drop10 10 drop
run link60 60 link
echo "PASS"
