#!/bin/bash
# A destination guest that only reads: afterwards the two RAM files must be
# bit-identical, compared directly.
. "$(dirname "$0")/lib.sh"
need_root
workdir
out=$("$FL" demo --json --no-precopy --size 64M --mode read --warmup 1 --workdir "$W/run" --keep 2>"$W/err") || {
	cat "$W/err"; fail "faultline demo exited nonzero"; }
line=$(echo "$out" | tail -n 1)
assert_migration "$line"
a=$(sha256sum "$W/run/src/ram0" | cut -d' ' -f1)
b=$(sha256sum "$W/run/dst/ram0" | cut -d' ' -f1)
echo "source $a"
echo "dest   $b"
[ "$a" = "$b" ] || fail "RAM files differ"
echo "PASS"
