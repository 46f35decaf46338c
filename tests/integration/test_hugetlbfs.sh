#!/bin/bash
# Guest RAM on hugetlbfs (2M pages): pure post-copy and pre-copy + post-copy.
# Exercises MISSING and MINOR faults on hugetlbfs, whole-huge-page fetches,
# uffd-wp async on hugetlb, and zero pages without UFFDIO_ZEROPAGE; each
# also with TCP zero-copy (received through the file's mapping, zero pages
# filled there; --sendfile falls back to copying: hugetlbfs cannot splice).
. "$(dirname "$0")/lib.sh"
need_root
workdir
want=200	# 2 VMs x 128 MiB + the agents' share, in 2M pages
old=$(cat /proc/sys/vm/nr_hugepages)
mnt=$W/huge
cleanup() { umount "$mnt" 2>/dev/null; echo "$old" > /proc/sys/vm/nr_hugepages; rm -rf "$W"; }
trap cleanup EXIT
[ "$old" -ge $want ] || echo $want > /proc/sys/vm/nr_hugepages 2>/dev/null
got=$(cat /proc/sys/vm/nr_hugepages)
[ "$got" -ge $want ] || { echo "SKIP: could reserve only $got of $want 2M huge pages"; exit 77; }
mkdir -p "$mnt"
mount -t hugetlbfs -o pagesize=2M none "$mnt" || { echo "SKIP: cannot mount hugetlbfs"; exit 77; }
for zc in "" "--zero-copy --sendfile"; do
for mode in --no-precopy ""; do
	out=$("$FL" demo --json --size 128M --warmup 0.5 --ram-dir "$mnt" --workdir "$W/run" $mode $zc 2>"$W/err") || {
		cat "$W/err"; fail "faultline demo $mode $zc exited nonzero on hugetlbfs"; }
	line=$(echo "$out" | tail -n 1)
	assert_migration "$line"
	tot=$(echo "$line" | jget total_pages)
	[ "$tot" = 64 ] || fail "expected 64 huge pages, the migration counted $tot"
	echo "ok: hugetlbfs ${mode:-with pre-copy} $zc: switch $(echo "$line" | jget switch_reason)"
done
done
echo "PASS"
