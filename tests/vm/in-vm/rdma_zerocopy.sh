# The zero-copy path: READs land straight in the destination's registered
# mapping of the RAM file (page cache), pages are mapped with CONTINUE.
# Pre-copy + post-copy (stale pre-copied pages are read over in place), and
# pure post-copy.
. /tests/lib
migrate --transport rdma --zero-copy --size 64M --vcpu-rate 2000
migrate --transport rdma --zero-copy --size 64M --no-precopy
