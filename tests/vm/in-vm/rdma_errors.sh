# RDMA failure paths, each one clear line, and the guest keeps running on the
# source: memlock too low to register the guest's RAM (CAP_IPC_LOCK dropped),
# and a listen address no RDMA device serves.
. /tests/lib
[ -x /usr/bin/setpriv ] || { echo "SKIP: no setpriv"; exit 77; }
out=$( (ulimit -l 1024; /usr/bin/setpriv --bounding-set=-ipc_lock -- faultline demo --host-ip "$FL_VM_IP" \
	--transport rdma --size 32M --warmup 0.3 --json) 2>&1)
echo "$out" | grep -v "^progress" | head -n 3; echo "$out" | grep -v "^progress" | tail -n 3
echo "$out" | grep -q 'RLIMIT_MEMLOCK is 1024 KiB' || fail "no clear memlock error"
echo "$out" | grep -q 'keeps running on the source' || fail "the guest did not stay on the source"
out=$(faultline demo --host-ip 127.0.0.1 --transport rdma --size 32M --warmup 0.3 2>&1)
echo "$out" | grep -v '^progress' | tail -n 2
echo "$out" | grep -qi 'no RDMA device serves 127.0.0.1:7000' || fail "no clear error for an address without RDMA"
echo "ok"
