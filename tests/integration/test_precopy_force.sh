#!/bin/bash
# (c) faultline force-complete in the middle of a pre-copy round: the switch
# is "forced" and the migration completes intact.
. "$(dirname "$0")/lib.sh"
need_root
command -v tc >/dev/null || { echo "SKIP: tc missing"; exit 77; }
workdir
id=force-$$
# 100 Mbit/s and a slow writer: round 1 alone takes seconds and converges
# slowly enough that only the operator ends it.
"$FL" demo --json --size 64M --rate-limit 100mbit --vcpu-rate 200 --pattern hot:5 --warmup 0.5 \
	--downtime-ms 1 --max-rounds 50 --id "$id" --status-dir "$W" --workdir "$W/run" --keep \
	>"$W/out" 2>"$W/err" &
demo=$!
wait_state "$id" precopy "$W" || { kill $demo; cat "$W/err"; fail "never saw pre-copy"; }
sleep 1
"$FL" force-complete "$id" --status-dir "$W" || fail "force-complete failed"
wait $demo || { cat "$W/err"; fail "faultline demo exited nonzero"; }
line=$(tail -n 1 "$W/out")
assert_migration "$line"
reason=$(echo "$line" | jget switch_reason)
echo "switch_reason=$reason rounds=$(echo "$line" | jget precopy_rounds)"
[ "$reason" = forced ] || fail "switch_reason is '$reason', want forced"
"$FL" force-complete "$id" --status-dir "$W" 2>/dev/null && fail "force-complete of a finished migration succeeded"
echo "PASS"
