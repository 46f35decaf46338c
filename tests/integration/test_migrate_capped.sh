#!/bin/bash
# The same over a link capped at 200 Mbit/s with tc (tbf).
. "$(dirname "$0")/lib.sh"
need_root
command -v tc >/dev/null || { echo "SKIP: tc missing"; exit 77; }
workdir
out=$("$FL" demo --json --no-precopy --size 64M --rate-limit 200mbit --warmup 1 --workdir "$W/run" --keep 2>"$W/err") || {
	cat "$W/err"; fail "faultline demo exited nonzero"; }
line=$(echo "$out" | tail -n 1)
assert_migration "$line"
file_sha=$(sha256sum "$W/run/src/ram0" | cut -d' ' -f1)
[ "$file_sha" = "$(echo "$line" | jget src_sha256)" ] || fail "source file checksum differs from the report"
# 64 MiB of (3/4 non-zero) pages at 200 Mbit/s cannot take less than ~1.9 s:
# proves the cap was in the path.
ms=$(echo "$line" | jget postcopy_ms | cut -d. -f1)
[ "$ms" -ge 1500 ] || fail "post-copy took $ms ms: the rate cap was not applied"
echo "PASS"
