# The RDMA transport against itself: fault and bulk channels read a
# patterned region back byte-exact (unsignalled tails flushed), a wrong
# session is refused, a read past the region is refused, and the source
# going away is reported.
. /tests/lib
timeout 120 rdma-selftest "$FL_VM_IP:7100"
