#!/bin/bash
# (b) Dirty rate above a tc-capped link: pre-copy never converges; faultline
# switches to post-copy on its own ("non-convergence") and completes. While
# post-copy runs, abort is refused with a clear message.
. "$(dirname "$0")/lib.sh"
need_root
command -v tc >/dev/null || { echo "SKIP: tc missing"; exit 77; }
workdir
id=nc-$$
"$FL" demo --json --size 64M --rate-limit 100mbit --pattern uniform --vcpu-rate 5000 --warmup 1 \
	--id "$id" --status-dir "$W" --workdir "$W/run" --keep >"$W/out" 2>"$W/err" &
demo=$!
if wait_state "$id" postcopy "$W"; then
	if "$FL" abort "$id" --status-dir "$W" >"$W/abort.out" 2>"$W/abort.err"; then
		fail "abort during post-copy was accepted"
	fi
	grep -q "abort refused" "$W/abort.err" || fail "abort during post-copy said: $(cat "$W/abort.err")"
	echo "ok: $(cat "$W/abort.err")"
else
	echo "note: post-copy ended before the abort check could run"
fi
wait $demo || { cat "$W/err"; fail "faultline demo exited nonzero"; }
line=$(tail -n 1 "$W/out")
assert_migration "$line"
assert_progress "$W/out"
echo "progress: $(grep -c '^progress' "$W/out") lines, e.g. $(grep -m1 '^progress: postcopy' "$W/out")"
reason=$(echo "$line" | jget switch_reason)
echo "switch_reason=$reason dirty_rate=$(echo "$line" | jget dirty_rate_mbps) link=$(echo "$line" | jget link_mbps)"
[ "$reason" = non-convergence ] || fail "switch_reason is '$reason', want non-convergence"
echo "PASS"
