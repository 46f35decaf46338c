# Each preflight refusal, triggered and checked: one clear line, exit 1,
# both from `faultline check` and, for one, from a real migration (refused
# before anything moves; the guest keeps running on the source).
. /tests/lib
n=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
[ "$n" -ge 2 ] || { echo "SKIP: one NUMA node"; exit 77; }
t=$((n - 1))
refused() {	# refused PATTERN CMD...: CMD exits 1 and says PATTERN
	pat=$1; shift
	out=$("$@" 2>&1); rc=$?
	echo "$out" | head -n 2
	[ $rc = 1 ] || fail "exit $rc, want 1: $*"
	echo "$out" | grep -q "$pat" || fail "no '$pat' from: $*"
}
mkdir -p /dev/shm/pf
truncate -s 64M /dev/shm/pf/ram0
faultline check --ram /dev/shm/pf/ram0 --numa-map 0:$t | grep -q 'preflight ok' || fail "a fitting cell was refused"
refused "mapped to node 9, but this host has node(s) 0-$t" faultline check --ram /dev/shm/pf/ram0 --numa-map 0:9
out=$(faultline check --ram /dev/shm/pf/ram0 --numa-map ramX:0 2>&1); rc=$?
echo "$out"
[ $rc = 2 ] && echo "$out" | grep -q "names 'ramX', which is not one of the guest's RAM regions" ||
	fail "a map naming an unknown region was not a usage error"
# more than the node has free (a sparse file costs nothing until placed)
truncate -s 8G /dev/shm/pf/big
refused "node $t has [0-9]* MiB free, its cells need 8192 MiB" faultline check --ram /dev/shm/pf/big --numa-map 0:$t
# huge pages: the node's pool is too small for the cell
echo 4 > /sys/devices/system/node/node$t/hugepages/hugepages-2048kB/nr_hugepages
mkdir -p /mnt/hpf && mount -t hugetlbfs -o pagesize=2M none /mnt/hpf
truncate -s 64M /mnt/hpf/ram0
refused "needs 32 free 2048K huge pages on its node, there are 4" faultline check --ram /mnt/hpf/ram0 --numa-map 0:$t
umount /mnt/hpf
refused "pinned to CPU(s) 64,65" faultline check --ram /dev/shm/pf/ram0 --guest-cpus 0,64-65
refused "CPU architecture differs: source aarch64" faultline check --ram /dev/shm/pf/ram0 --source-arch aarch64
# a VM process holding a VFIO group (PCI passthrough)
mkdir -p /dev/vfio && : > /dev/vfio/42
sleep 60 9</dev/vfio/42 &
vm=$!
refused "holds /dev/vfio/42: a PCI passthrough" faultline check --ram /dev/shm/pf/ram0 --vm-pid $vm
kill $vm
refused "RLIMIT_MEMLOCK is 64 KiB" sh -c 'ulimit -l 64; exec /usr/bin/setpriv --bounding-set=-ipc_lock -- faultline check --ram /dev/shm/pf/ram0 --rdma'
# the agent runs the same preflight before anything moves
out=$(faultline demo --host-ip "$FL_VM_IP" --json --warmup 0.5 --size 32M --numa-map 0:9 2>&1)
echo "$out" | grep -v '^progress' | tail -n 3
echo "$out" | grep -q 'preflight: cell 0 (ram0) is mapped to node 9' || fail "the migration did not run the preflight"
echo "$out" | grep -q 'keeps running on the source' || fail "the guest did not stay on the source"
rm -rf /dev/shm/pf
echo ok
