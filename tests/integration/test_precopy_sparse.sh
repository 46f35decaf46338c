#!/bin/bash
# Worst cases for the dirty-set encoding: a writer that dirties every other
# page (65,536 pages of alternating runs no longer fit one 64 KiB DIRTY frame
# if frames are cut by page count: the run used to end "destination lost
# before switchover (No space left on device)"), and one that writes a random
# half of the pages. Several pre-copy rounds each; the guest self-check and
# the RAM checksums must be clean. Each also with TCP zero-copy both ways
# (--zero-copy: received into the RAM file's page cache; --sendfile): stale
# pages punched and read again into place, zero pages left holes.
. "$(dirname "$0")/lib.sh"
need_root
workdir
for zc in "" "--zero-copy --sendfile"; do
for pattern in stride:2 subset:50; do
	# 6000 writes/s (~200 Mbit/s dirtied) leave the link headroom on a slow
	# machine: the mid-round probe switches when the dirty rate passes the
	# link's first 0.5 s (a CI run at 11000 switched in round 1). The frame
	# split of 65,536 alternating pages is test_proto's regression case.
	out=$("$FL" demo --json --size 256M --rate-limit 1gbit --vcpu-rate 6000 --pattern "$pattern" --max-rounds 4 \
		--downtime-ms 1 --warmup 1 --workdir "$W/run" $zc 2>"$W/err") || {
		tail -n 15 "$W/err"; fail "$pattern $zc: faultline demo exited nonzero"; }
	line=$(echo "$out" | tail -n 1)
	assert_migration "$line"
	rounds=$(echo "$line" | jget precopy_rounds)
	echo "$pattern ${zc:-(copied)}: rounds=$rounds switch=$(echo "$line" | jget switch_reason) final_dirty=$(echo "$line" | jget final_dirty_pages) punched=$(echo "$line" | jget punched_pages)"
	[ "$rounds" -ge 2 ] || fail "$pattern: only $rounds pre-copy round(s): the dirty set was never resent"
	[ "$(echo "$line" | jget punched_pages)" -gt 0 ] || fail "$pattern: no stale page was replaced"
done
done
echo "PASS"
