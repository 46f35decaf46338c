#!/bin/bash
# A real Linux guest (Debian's stock kernel, busybox initramfs, TCG) with two
# guest NUMA nodes, each its own RAM backend file, live-migrated by faultline
# + unmodified QEMU: pre-copy, switchover at QEMU's STOP event, post-copy. The guest checks every page it reads and all of them every
# two seconds; its heartbeats must continue on the destination with no
# corruption found.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
workdir
G=$("$TOP/tests/vm/build-guest" "$W/guest" 2>"$W/build.err") || { cat "$W/build.err"; fail "cannot build the test guest"; }
qemu() {	# qemu NAME EXTRA...
	name=$1; shift
	mkdir -p "$W/$name"
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/$name/ FAULTLINE_SHIM_SOCK=$W/$name.shim \
		qemu-system-x86_64 -machine pc,accel=tcg -m 256M -smp 2 \
		-object memory-backend-file,id=ram0,size=128M,mem-path=$W/$name/ram0,share=on \
		-object memory-backend-file,id=ram1,size=128M,mem-path=$W/$name/ram1,share=on \
		-numa node,nodeid=0,cpus=0,memdev=ram0 -numa node,nodeid=1,cpus=1,memdev=ram1 \
		-kernel "$G/vmlinuz" -initrd "$G/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1" -display none -monitor none \
		-serial file:"$W/$name.serial" -qmp unix:"$W/$name.qmp",server=on,wait=off "$@" \
		>"$W/$name.log" 2>&1 &
	echo $! > "$W/$name.pid"
}
cleanup() { for p in "$W"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

qemu src
for i in $(seq 240); do grep -q "HB seq=5 " "$W/src.serial" 2>/dev/null && break; sleep 0.25; done
grep -q "HB seq=5 " "$W/src.serial" || { tail "$W/src.serial" "$W/src.log"; fail "the guest did not boot"; }
echo "ok: guest booted: $(grep -m1 'GUEST READY' "$W/src.serial")"
qemu dst -incoming defer
for i in $(seq 100); do [ -S "$W/dst.qmp" ] && [ -S "$W/dst.shim" ] && break; sleep 0.05; done
out=$("$FL" qemu migrate --src-qmp "$W/src.qmp" --dst-qmp "$W/dst.qmp" --src-shim "$W/src.shim" \
	--dst-shim "$W/dst.shim" --listen 127.0.0.1:7430 --qemu-uri tcp:127.0.0.1:7431 --status-dir "$W" \
	--id guest --json 2>"$W/err") || { cat "$W/err"; fail "faultline qemu migrate failed"; }
line=$(echo "$out" | tail -n 1)
[ "$(echo "$line" | jget state)" = completed ] || fail "state is not completed"
[ "$(echo "$line" | jget qemu_status)" = completed ] || fail "QEMU's migration: $(echo "$line" | jget qemu_status)"
[ "$(echo "$line" | jget qemu_dst_status)" = running ] || fail "the guest does not run on the destination"
pages=$(echo "$line" | jget total_pages)
[ "$pages" = 65536 ] || fail "expected both backends (65536 pages), the migration counted $pages"
n=$("$FL" shim-info "$W/dst.shim" | grep -o '"path"' | wc -l)
[ "$n" = 2 ] || fail "the destination shim tracks $n RAM backends, want 2"
last_src=$(grep -o 'HB seq=[0-9]*' "$W/src.serial" | tail -n 1 | cut -d= -f2)
# the guest goes on: ten more heartbeats and a full self-check, on the destination
for i in $(seq 200); do
	[ "$(grep -c '^HB' "$W/dst.serial" 2>/dev/null)" -ge 10 ] && grep -q '^VERIFY' "$W/dst.serial" && break
	sleep 0.1
done
first_dst=$(grep -o 'HB seq=[0-9]*' "$W/dst.serial" | head -n 1 | cut -d= -f2)
echo "source's last heartbeat $last_src, destination's first $first_dst"
echo "$(grep -c '^HB' "$W/dst.serial") heartbeats on the destination; $(grep '^HB' "$W/dst.serial" | tail -n 1)"
[ -n "$first_dst" ] && [ "$first_dst" -gt "$last_src" ] || fail "the destination's guest did not continue the source's"
grep -q '^VERIFY' "$W/dst.serial" || fail "no full self-check ran on the destination"
grep -q '^CORRUPT' "$W/dst.serial" && { grep -m3 '^CORRUPT' "$W/dst.serial"; fail "the guest found corrupt pages"; }
grep -E '^(HB|VERIFY)' "$W/dst.serial" | grep -qv 'corrupt=0' && fail "the guest counted corruption"
echo "ok: guest self-check clean: $(grep '^VERIFY' "$W/dst.serial" | tail -n 1); switch $(echo "$line" | jget switch_reason), QEMU downtime $(echo "$line" | jget qemu_downtime_ms) ms"
echo "PASS"
