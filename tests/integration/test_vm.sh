#!/bin/bash
# The test VM (tests/vm/run-vm): Debian's stock kernel under QEMU TCG with
# soft-RoCE and guest NUMA nodes. With 2 nodes: the RDMA transport against
# itself, guest-sim migrations over RDMA (pre-copy + post-copy, and pure
# post-copy), zero-copy, over TCP, RDMA failure paths, NUMA nodes, placement
# (4K and 2M) and preflight refusals. With 4 nodes: the
# device, the nodes, placement on the last node and the preflight refusals.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
need_root
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$TOP/tests/vm/run-vm" --nodes 2 --log "$log" >/dev/null 2>&1
rc=$?
grep -E '^(VMTEST|RESULT|FAIL|VMINFO|migrated|guest:|placement)' "$log" | tr -d '\r'
[ $rc = 0 ] || fail "a test in the 2-node VM failed (exit $rc)"
"$TOP/tests/vm/run-vm" --nodes 4 --mem 2048 --log "$log" rdma_device numa_nodes rdma_transport \
	numa_placement numa_preflight >/dev/null 2>&1
rc=$?
grep -E "^(VMTEST|VMINFO|FAIL|nodes|placement)" "$log" | tr -d "\r"
[ $rc = 0 ] || fail "a test in the 4-node VM failed (exit $rc)"
echo "PASS"
