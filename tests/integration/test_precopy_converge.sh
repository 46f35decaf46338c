#!/bin/bash
# (a) A workload whose dirty rate the link outruns: pre-copy converges, the
# switch is "converged", most pages are current at switchover, and the pages
# dirtied after they were pre-copied (stale in the destination's page cache:
# punched out and re-fetched) are never seen by the guest, which checks every
# page it reads and, at the end, every page: the minor-fault gate.
. "$(dirname "$0")/lib.sh"
need_root
workdir
out=$("$FL" demo --json --size 128M --vcpu-rate 2000 --warmup 1 --workdir "$W/run" --keep 2>"$W/err") || {
	cat "$W/err"; fail "faultline demo exited nonzero"; }
line=$(echo "$out" | tail -n 1)
assert_migration "$line"
reason=$(echo "$line" | jget switch_reason)
rounds=$(echo "$line" | jget precopy_rounds)
final=$(echo "$line" | jget final_dirty_pages)
punched=$(echo "$line" | jget punched_pages)
clean=$(echo "$line" | jget clean_pages)
echo "switch_reason=$reason rounds=$rounds final_dirty=$final stale_replaced=$punched clean=$clean backend=$(echo "$line" | jget dirty_backend)"
[ "$reason" = converged ] || fail "switch_reason is '$reason', want converged"
[ "$(echo "$line" | jget precopy_pages)" -gt 0 ] || fail "nothing was pre-copied"
[ "$clean" -gt $(( $(echo "$line" | jget total_pages) / 2 )) ] || fail "only $clean pages were current at switchover"
[ "$punched" -gt 0 ] || fail "no pre-copied page went stale: the gate was not exercised"
file_sha=$(sha256sum "$W/run/src/ram0" | cut -d' ' -f1)
[ "$file_sha" = "$(echo "$line" | jget src_sha256)" ] || fail "source file checksum differs from the report"
echo "PASS"
