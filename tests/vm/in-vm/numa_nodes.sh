# The VM has the NUMA nodes it was booted with, each with memory that a
# process can be bound to.
. /tests/lib
n=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
echo "nodes: $n (want ${fl_nodes:-?})"
[ -z "${fl_nodes:-}" ] || [ "$n" = "$fl_nodes" ] || fail "$n NUMA nodes, booted with $fl_nodes"
numactl -H | head -n 3
i=0
while [ $i -lt "$n" ]; do
	numactl --membind=$i --cpunodebind=$i true || fail "cannot bind to node $i"
	i=$((i + 1))
done
