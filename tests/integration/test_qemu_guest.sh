#!/bin/bash
# A real Linux guest (Debian's stock kernel, busybox initramfs, TCG) live-
# migrated by faultline + unmodified QEMU: pre-copy, switchover at QEMU's STOP
# event, post-copy. The guest checks every page it reads and all of them every
# two seconds; its heartbeats must continue on the destination with no
# corruption found. Cases: two guest NUMA nodes with a tmpfs RAM file each
# (placement from the destination's bound backends), the same left paused on
# the destination so its RAM files can be compared byte for byte with the
# source's at switchover (with disk reads in flight at the stop, which QEMU
# completes into guest RAM after its STOP event), and one hugetlbfs (2M)
# RAM file.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
need_root
workdir
G=$("$TOP/tests/vm/build-guest" "$W/guest" 2>"$W/build.err") || { cat "$W/build.err"; fail "cannot build the test guest"; }
HUGE_OLD=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
	qemu_stop_all
	sleep 0.3
	umount "$W/huge" 2>/dev/null
	echo "$HUGE_OLD" > /proc/sys/vm/nr_hugepages
	rm -rf "$W"
}
trap cleanup EXIT

run_case() {	# run_case TAG RAMDIR NODES PORT
	tag=$1 ram=$2 nodes=$3 port=$4
	src=$tag-src dst=$tag-dst
	qemu_vm "$src" "$ram" "$nodes" 256M
	for i in $(seq 240); do grep -q "HB seq=5 " "$W/$src.serial" 2>/dev/null && break; sleep 0.25; done
	grep -q "HB seq=5 " "$W/$src.serial" || { tail "$W/$src.serial" "$W/$src.log"; fail "$tag: the guest did not boot"; }
	QEMU_HOSTNODES=$([ "$nodes" = 2 ] && echo 0) qemu_vm "$dst" "$ram" "$nodes" 256M -incoming defer
	for i in $(seq 100); do [ -S "$W/$dst.qmp" ] && [ -S "$W/$dst.shim" ] && break; sleep 0.05; done
	out=$("$FL" qemu migrate --src-qmp "$W/$src.qmp" --dst-qmp "$W/$dst.qmp" --src-shim "$W/$src.shim" \
		--dst-shim "$W/$dst.shim" --listen 127.0.0.1:$port --qemu-uri tcp:127.0.0.1:$((port + 1)) \
		--status-dir "$W" --id "$tag" --json 2>"$W/$tag.err") || { cat "$W/$tag.err"; fail "$tag: faultline qemu migrate failed"; }
	line=$(echo "$out" | tail -n 1)
	[ "$(echo "$line" | jget state)" = completed ] || fail "$tag: state is not completed"
	[ "$(echo "$line" | jget qemu_status)" = completed ] || fail "$tag: QEMU's migration: $(echo "$line" | jget qemu_status)"
	[ "$(echo "$line" | jget qemu_dst_status)" = running ] || fail "$tag: the guest does not run on the destination"
	n=$("$FL" shim-info "$W/$dst.shim" | grep -o '"path"' | wc -l)
	[ "$n" = "$nodes" ] || fail "$tag: the destination shim tracks $n RAM backends, want $nodes"
	last_src=$(grep -o 'HB seq=[0-9]*' "$W/$src.serial" | tail -n 1 | cut -d= -f2)
	for i in $(seq 200); do
		[ "$(grep -c '^HB' "$W/$dst.serial" 2>/dev/null)" -ge 10 ] && grep -q '^VERIFY' "$W/$dst.serial" && break
		sleep 0.1
	done
	first_dst=$(grep -o 'HB seq=[0-9]*' "$W/$dst.serial" | head -n 1 | cut -d= -f2)
	echo "$tag: source's last heartbeat $last_src, destination's first $first_dst; $(grep '^HB' "$W/$dst.serial" | tail -n 1)"
	[ -n "$first_dst" ] && [ "$first_dst" -gt "$last_src" ] || fail "$tag: the destination's guest did not continue the source's"
	guest_selfcheck "$W/$dst.serial" || fail "$tag: the guest's self-check (above)"
	if [ "$nodes" = 2 ]; then	# the NUMA map comes from the destination's backends
		m=$(grep 'NUMA map from the destination QEMU:' "$W/$tag.err")
		echo "$m" | grep -q 'ram0:0' && echo "$m" | grep -q 'ram1:0' || fail "$tag: no NUMA map from QEMU: $m"
		for c in 0 1; do
			grep -q "^placement: cell $c (ram$c): .* on node 0 (100.00%)" "$W/$tag.err" ||
				{ grep placement "$W/$tag.err"; fail "$tag: cell $c not verified on node 0"; }
		done
	fi
	echo "ok: $tag: guest self-check clean; switch $(echo "$line" | jget switch_reason), QEMU downtime $(echo "$line" | jget qemu_downtime_ms) ms, stop and drain $(echo "$line" | jget vm_stop_ms) ms"
	qemu_stop_all
}

run_case numa2 "$W" 2 7430

# The RAM itself: the destination started with -S stays paused after the
# migration (--leave-paused), so its RAM files can be compared with the
# source's, frozen since its STOP; then it is resumed and must run on clean.
# The guest keeps direct reads of a virtio disk in flight, each taking
# 20 ms: QEMU completes those after the STOP, in its block drain, writing
# guest RAM (the used ring) then, and the final dirty set must hold them.
disk=(-blockdev driver=null-co,node-name=d0,size=67108864,latency-ns=20000000,read-zeroes=on
      -device virtio-blk-pci,drive=d0)
GUEST_ARGS=disk qemu_vm vs "$W" 2 256M "${disk[@]}"
for i in $(seq 240); do grep -q "HB seq=5 " "$W/vs.serial" 2>/dev/null && break; sleep 0.25; done
grep -q "DISK READERS" "$W/vs.serial" || { head -n 5 "$W/vs.serial" "$W/vs.log"; fail "verify: the guest's disk readers did not start"; }
GUEST_ARGS=disk qemu_vm vd "$W" 2 256M -incoming defer -S "${disk[@]}"
for i in $(seq 100); do [ -S "$W/vd.qmp" ] && [ -S "$W/vd.shim" ] && break; sleep 0.05; done
out=$("$FL" qemu migrate --src-qmp "$W/vs.qmp" --dst-qmp "$W/vd.qmp" --src-shim "$W/vs.shim" \
	--dst-shim "$W/vd.shim" --listen 127.0.0.1:7438 --qemu-uri tcp:127.0.0.1:7439 --leave-paused \
	--status-dir "$W" --id vsum --json 2>"$W/vsum.err") || { cat "$W/vsum.err"; fail "verify: faultline qemu migrate failed"; }
line=$(echo "$out" | tail -n 1)
[ "$(echo "$line" | jget state)" = completed ] || fail "verify: not completed"
[ "$(echo "$line" | jget qemu_dst_status)" = paused ] || fail "verify: destination is $(echo "$line" | jget qemu_dst_status), want paused"
for f in ram0 ram1; do
	a=$(sha256sum < "$W/vs/$f" | cut -c1-64); b=$(sha256sum < "$W/vd/$f" | cut -c1-64)
	[ "$a" = "$b" ] || fail "verify: $f differs between the source at switchover and the destination:" \
		"$(cmp -l "$W/vs/$f" "$W/vd/$f" | awk '{ p[int(($1 - 1) / 4096)] = 1 } END { n = 0; for (k in p) { n++; l = l " " k }; print n " page(s):" l }' | cut -c1-200)"
	echo "ok: $f identical on both hosts ($a)"
done
echo "ok: in-flight disk reads at the switch: the VM's stop and drain took $(echo "$line" | jget vm_stop_ms) ms"
"$FL" qmp "$W/vd.qmp" cont >/dev/null || fail "verify: cannot resume the destination"
for i in $(seq 200); do grep -q '^VERIFY' "$W/vd.serial" 2>/dev/null && break; sleep 0.1; done
guest_selfcheck "$W/vd.serial" || fail "verify: the resumed guest's self-check (above)"
echo "ok: verify: resumed guest runs on, self-check clean"
qemu_stop_all
# hugetlbfs: 2 x 256 MiB of 2M pages
[ "$HUGE_OLD" -ge 300 ] || echo 300 > /proc/sys/vm/nr_hugepages 2>/dev/null
if [ "$(cat /proc/sys/vm/nr_hugepages)" -ge 260 ] && mkdir -p "$W/huge" &&
   mount -t hugetlbfs -o pagesize=2M none "$W/huge"; then
	run_case huge "$W/huge" 1 7434
else
	echo "note: could not reserve 2M huge pages; the hugetlbfs case did not run"
fi
echo "PASS"
