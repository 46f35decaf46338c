# Pre-copy + post-copy over RDMA READ (bounce buffers + UFFDIO_COPY).
. /tests/lib
migrate --transport rdma --size 64M --vcpu-rate 2000
