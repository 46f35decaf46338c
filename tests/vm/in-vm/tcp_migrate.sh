# The same migration over TCP in the same VM: the RDMA runs' reference.
. /tests/lib
migrate --transport tcp --size 64M --vcpu-rate 2000
