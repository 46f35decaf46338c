#!/bin/bash
# (d) faultline abort in the middle of pre-copy: the migration is cancelled,
# the source VM never stopped and keeps running, and its RAM is intact.
. "$(dirname "$0")/lib.sh"
need_root
command -v tc >/dev/null || { echo "SKIP: tc missing"; exit 77; }
workdir
id=abort-$$
"$FL" demo --json --size 64M --rate-limit 50mbit --vcpu-rate 200 --warmup 0.5 --downtime-ms 1 \
	--max-rounds 50 --id "$id" --status-dir "$W" --workdir "$W/run" --keep >"$W/out" 2>"$W/err" &
demo=$!
wait_state "$id" precopy "$W" || { kill $demo; cat "$W/err"; fail "never saw pre-copy"; }
sleep 0.5
"$FL" abort "$id" --status-dir "$W" || fail "abort failed"
wait $demo && fail "an aborted migration exited 0"
line=$(tail -n 1 "$W/out")
echo "$line" | cut -c1-300
[ "$(echo "$line" | jget state)" = cancelled ] || fail "state is not cancelled"
[ "$(echo "$line" | jget source_vm_running)" = true ] || fail "the source VM is not running after abort"
grep -q "aborted by the operator" "$W/err" || fail "no abort message: $(cat "$W/err")"
echo "ok: $(grep -m1 cancelled "$W/err")"
echo "PASS"
