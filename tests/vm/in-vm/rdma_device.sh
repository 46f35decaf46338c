# soft-RoCE is up: an rxe device bound to the veth, port ACTIVE.
. /tests/lib
/usr/sbin/rdma link show
/usr/sbin/rdma link show | grep -q 'rxe0/1 state ACTIVE' || fail "no active rxe0 port"
echo "nodes: $(ls -d /sys/devices/system/node/node[0-9]* | wc -l)"
