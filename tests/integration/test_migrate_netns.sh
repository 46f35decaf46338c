#!/bin/bash
# guest-sim migrated pure post-copy between two namespace hosts over an uncapped veth.
. "$(dirname "$0")/lib.sh"
need_root
workdir
out=$("$FL" demo --json --no-precopy --size 128M --warmup 1 --workdir "$W/run" --keep 2>"$W/err") || {
	cat "$W/err"; fail "faultline demo exited nonzero"; }
line=$(echo "$out" | tail -n 1)
assert_migration "$line"
# The source file is frozen since switchover: an independent checksum of it
# must equal what the source agent reported and what the guest found.
file_sha=$(sha256sum "$W/run/src/ram0" | cut -d' ' -f1)
[ "$file_sha" = "$(echo "$line" | jget src_sha256)" ] || fail "source file checksum differs from the report"
[ "$(echo "$line" | jget fault_pages)" -gt 0 ] || fail "no page was fetched on a fault"
[ "$(echo "$line" | jget zero_pages)" -gt 0 ] || fail "no zero page was elided"
# faultline status knows the finished migration on both sides.
id=$(echo "$line" | jget id)
st=$("$FL" status "$id" --json) || fail "faultline status $id failed"
echo "$st"
[ "$(echo "$st" | grep -o '"state":"completed"' | wc -l)" = 2 ] || fail "status does not show both agents completed"
"$FL" status no-such-migration >/dev/null 2>&1 && fail "status of an unknown migration succeeded"
echo "PASS"
