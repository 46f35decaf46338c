# Each guest cell lands on its intended node, whichever CPU served it: the
# whole migration (both agents, both guest-sims) is started on node 0 and
# the cell is mapped to the last node. 4K (tmpfs: the file's shared policy)
# and 2M (hugetlbfs: the placing threads move to the node). placement >= 99%
# (the migration exits nonzero below), corrupt 0, checksums equal.
. /tests/lib
n=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
[ "$n" -ge 2 ] || { echo "SKIP: one NUMA node"; exit 77; }
t=$((n - 1))
placed() {	# placed LOG: the placement line, >= 99% on node $t
	grep '^placement:' "$1" || fail "no placement report"
	grep -q "^placement: cell 0 (ram0): .* on node $t " "$1" || fail "cell 0 not reported on node $t"
	pct=$(sed -n 's/^placement: cell 0 .*(\([0-9.]*\)%).*/\1/p' "$1" | cut -d. -f1)
	[ "${pct:-0}" -ge 99 ] || fail "only $pct% of cell 0 on node $t"
}
numactl --cpunodebind=0 --membind=0 faultline demo --host-ip "$FL_VM_IP" --json --warmup 1 \
	--size 64M --numa-map 0:$t >/tmp/p4k.out 2>/tmp/p4k.err || { grep -v '^progress' /tmp/p4k.err | tail; fail "4K migration failed"; }
line=$(tail -n 1 /tmp/p4k.out)
[ "$(echo "$line" | jget corrupt_pages)" = 0 ] && [ "$(echo "$line" | jget checksum_match)" = true ] || fail "4K: corruption"
placed /tmp/p4k.err
# 2M: pools on node 0 (the source's file) and on node $t
# node 0 also backs the destination's reservation: the process is bound there
echo 80 > /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages
echo 48 > /sys/devices/system/node/node$t/hugepages/hugepages-2048kB/nr_hugepages
mkdir -p /mnt/huge && mount -t hugetlbfs -o pagesize=2M none /mnt/huge || fail "no hugetlbfs"
numactl --cpunodebind=0 --membind=0 faultline demo --host-ip "$FL_VM_IP" --json --warmup 1 \
	--size 64M --ram-dir /mnt/huge --numa-map 0:$t >/tmp/p2m.out 2>/tmp/p2m.err || { grep -v '^progress' /tmp/p2m.err | tail; fail "2M migration failed"; }
line=$(tail -n 1 /tmp/p2m.out)
[ "$(echo "$line" | jget corrupt_pages)" = 0 ] && [ "$(echo "$line" | jget checksum_match)" = true ] || fail "2M: corruption"
placed /tmp/p2m.err
umount /mnt/huge
echo ok
