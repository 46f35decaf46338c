#!/bin/bash
# A real Linux guest (Debian's stock kernel, busybox initramfs, TCG) live-
# migrated by faultline + unmodified QEMU: pre-copy, switchover at QEMU's STOP
# event, post-copy. The guest checks every page it reads and all of them every
# two seconds; its heartbeats must continue on the destination with no
# corruption found. Two cases: two guest NUMA nodes with a tmpfs RAM file
# each, and one hugetlbfs (2M) RAM file.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
need_root
workdir
G=$("$TOP/tests/vm/build-guest" "$W/guest" 2>"$W/build.err") || { cat "$W/build.err"; fail "cannot build the test guest"; }
HUGE_OLD=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
	for p in "$W"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
	sleep 0.3
	umount "$W/huge" 2>/dev/null
	echo "$HUGE_OLD" > /proc/sys/vm/nr_hugepages
	rm -rf "$W"
}
trap cleanup EXIT

qemu() {	# qemu NAME RAMDIR NODES EXTRA...
	name=$1 ram=$2 nodes=$3; shift 3
	mkdir -p "$ram/$name"
	mem=()
	if [ "$nodes" = 2 ]; then
		mem=(-smp 2
		     -object memory-backend-file,id=ram0,size=128M,mem-path=$ram/$name/ram0,share=on
		     -object memory-backend-file,id=ram1,size=128M,mem-path=$ram/$name/ram1,share=on
		     -numa node,nodeid=0,cpus=0,memdev=ram0 -numa node,nodeid=1,cpus=1,memdev=ram1)
	else
		mem=(-object memory-backend-file,id=ram0,size=256M,mem-path=$ram/$name/ram0,share=on
		     -machine memory-backend=ram0)
	fi
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$ram/$name/ FAULTLINE_SHIM_SOCK=$W/$name.shim \
		qemu-system-x86_64 -machine pc,accel=tcg -m 256M "${mem[@]}" \
		-kernel "$G/vmlinuz" -initrd "$G/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1" -display none -monitor none \
		-serial file:"$W/$name.serial" -qmp unix:"$W/$name.qmp",server=on,wait=off "$@" \
		>"$W/$name.log" 2>&1 &
	echo $! > "$W/$name.pid"
}

run_case() {	# run_case TAG RAMDIR NODES PORT
	tag=$1 ram=$2 nodes=$3 port=$4
	src=$tag-src dst=$tag-dst
	qemu "$src" "$ram" "$nodes"
	for i in $(seq 240); do grep -q "HB seq=5 " "$W/$src.serial" 2>/dev/null && break; sleep 0.25; done
	grep -q "HB seq=5 " "$W/$src.serial" || { tail "$W/$src.serial" "$W/$src.log"; fail "$tag: the guest did not boot"; }
	qemu "$dst" "$ram" "$nodes" -incoming defer
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
	grep -q '^VERIFY' "$W/$dst.serial" || fail "$tag: no full self-check ran on the destination"
	grep -q '^CORRUPT' "$W/$dst.serial" && { grep -m3 '^CORRUPT' "$W/$dst.serial"; fail "$tag: the guest found corrupt pages"; }
	grep -E '^(HB|VERIFY)' "$W/$dst.serial" | grep -qv 'corrupt=0' && fail "$tag: the guest counted corruption"
	echo "ok: $tag: guest self-check clean; switch $(echo "$line" | jget switch_reason), QEMU downtime $(echo "$line" | jget qemu_downtime_ms) ms"
	for p in "$W/$src.pid" "$W/$dst.pid"; do kill "$(cat "$p")" 2>/dev/null; rm -f "$p"; done
}

run_case numa2 "$W" 2 7430
# hugetlbfs: 2 x 256 MiB of 2M pages
[ "$HUGE_OLD" -ge 300 ] || echo 300 > /proc/sys/vm/nr_hugepages 2>/dev/null
if [ "$(cat /proc/sys/vm/nr_hugepages)" -ge 260 ] && mkdir -p "$W/huge" &&
   mount -t hugetlbfs -o pagesize=2M none "$W/huge"; then
	run_case huge "$W/huge" 1 7434
else
	echo "note: could not reserve 2M huge pages; the hugetlbfs case did not run"
fi
echo "PASS"
