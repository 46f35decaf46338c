# Helpers for the in-VM tests (busybox sh).
jget() { sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" | tr -d '"'; }
fail() { echo "FAIL: $*"; exit 1; }
# migrate ARGS...: a guest-sim migration between two processes on this VM at
# $FL_VM_IP (soft-RoCE loops back to its own address); checks completed, no
# corruption, RAM checksum equal. Leaves the JSON line in $line.
migrate() {
	line=$(faultline demo --host-ip "$FL_VM_IP" --json --warmup 1 "$@" 2>/tmp/demo.err | tail -n 1)
	grep -v '^progress' /tmp/demo.err | tail -n 6
	[ "$(echo "$line" | jget state)" = completed ] || fail "state $(echo "$line" | jget state): $(echo "$line" | jget error)"
	[ "$(echo "$line" | jget corrupt_pages)" = 0 ] || fail "corrupt_pages $(echo "$line" | jget corrupt_pages)"
	[ "$(echo "$line" | jget checksum_match)" = true ] || fail "RAM checksum differs from the source at switchover"
	echo "RESULT $(echo "$line" | tr ',' '\n' | grep -E '"(total_ms|fault_p50_us|fault_p99_us|bulk_mbps|precopy_rounds|switch_reason|faults|postcopy_pages|dirty_backend)"' | tr '\n' ' ')"
}
