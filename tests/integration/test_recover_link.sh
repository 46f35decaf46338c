#!/bin/bash
# Migrations that survive the link: a guest-sim VM migrating over a capped
# link (100 Mbit/s, so each phase lasts ~20 s) loses it: in post-copy the
# veth down for 5 s and for 60 s, and the data port dropped by iptables for
# 10 s: both ends pause (postcopy-paused), the destination reconnects with
# backoff and post-copy resumes; in pre-copy the veth down for 60 s: the
# VM keeps running on the source and the migration starts over until the
# link is back. Every case must end completed, the guest's self-check
# clean, the RAM checksum equal to the source's at switchover, each page
# placed once. The guest's longest stall and the time from the resume to
# the first fault answered are printed for each.
. "$(dirname "$0")/lib.sh"
need_root
command -v iptables >/dev/null || { echo "SKIP: iptables missing (scripts/install-deps installs it)"; exit 77; }
workdir

# run NAME DOWN_S HOW PHASE [demo options]: HOW = link (veth down) | drop
# (iptables on port 7000), from PHASE (precopy | postcopy) on
run() {
	local name=$1 down=$2 how=$3 phase=$4; shift 4
	rm -rf "$W/st"
	"$FL" demo --json --size 256M --rate-limit 100mbit --warmup 1 --workdir "$W/run" \
		--status-dir "$W/st" --id "rec-$name" "$@" >"$W/out" 2>"$W/err" &
	local pid=$! ns_dst="fl-$!-dst" dev="fld$!"
	wait_state "rec-$name" $phase "$W/st" || { kill $pid; fail "$name: never reached $phase: $(tail -n 5 "$W/err")"; }
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
	if [ -n "$seen" ] && [ $phase = postcopy ] && [ "$down" -ge 60 ]; then
		# the operator, on the destination host, while it is paused
		"$FL" recover "rec-$name" --status-dir "$W/st" >"$W/rec.out" 2>&1 ||
			fail "$name: faultline recover failed: $(cat "$W/rec.out")"
		grep -q "reconnecting" "$W/rec.out" || fail "$name: recover said $(cat "$W/rec.out")"
		"$FL" recover "rec-$name" --status-dir "$W/st" --address nocolon >/dev/null 2>&1
		[ $? = 2 ] || fail "$name: recover --address without a port was not refused as a bad command line"
		echo "ok: $name: faultline recover while paused: $(cat "$W/rec.out")"
	fi
	case $how in
	link) ip -n "$ns_dst" link set "$dev" up ;;
	drop) ip netns exec "$ns_dst" iptables -F ;;
	esac
	wait $pid; local rc=$?
	line=$(tail -n 1 "$W/out")
	[ $rc = 0 ] || { tail -n 15 "$W/err"; fail "$name: faultline demo exited $rc"; }
	"$FL" recover "rec-$name" --status-dir "$W/st" >/dev/null 2>&1 && fail "$name: recover of a finished migration succeeded"
	assert_migration "$line"
	local rec=$(echo "$line" | jget recoveries)
	echo "$name: down ${down}s by $how in $phase: recoveries=${rec:-0} attempts=$(echo "$line" | jget attempts)" \
	     "paused_max_ms=$(echo "$line" | jget paused_max_ms)" \
	     "resume_to_fault_ms=$(echo "$line" | jget resume_to_fault_ms) guest max stall $(echo "$line" | jget max_stall_ms) ms"
	if [ $phase = precopy ]; then	# the VM never left the source: started over
		[ "$(echo "$line" | jget attempts)" -ge 2 ] || fail "$name: a ${down} s outage in pre-copy and one attempt"
		return
	fi
	[ "$down" -lt 10 ] || [ "${rec:-0}" -ge 1 ] || fail "$name: a ${down} s outage with no recovery"
	[ "$down" -lt 10 ] || [ -n "$seen" ] || fail "$name: the destination never showed postcopy-paused"
	grep -q "post-copy paused" "$W/err" || [ "$down" -lt 10 ] || fail "$name: no pause logged"
}

run link5 5 link postcopy --no-precopy
run drop10 10 drop postcopy --no-precopy
run link60 60 link postcopy --no-precopy
run pre-link60 60 link precopy --vcpu-rate 500
echo "PASS"
