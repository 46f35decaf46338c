# Pure post-copy over RDMA READ: every page is faulted or pulled.
. /tests/lib
migrate --transport rdma --size 64M --no-precopy
