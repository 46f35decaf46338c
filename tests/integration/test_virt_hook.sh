#!/bin/bash
# libvirt's hook drop-in (faultline virt hook) on domain XML alone, no
# libvirt needed: a domain that is not faultline's passes untouched and
# silent; a prepared domain that has since gained a vhost-user device (its
# backend maps the RAM in its own process, which the libvirt path does not
# serve) makes libvirt abort the migration with one line, before any daemon
# is asked, so the guest stays where it runs.
. "$(dirname "$0")/lib.sh"

dom() {	# dom NAME PREPARED(0/1) EXTRA-DEVICES
	local mb='' cmd=''
	if [ "$2" = 1 ]; then
		mb="<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>"
		cmd="<qemu:commandline><qemu:arg value='-chardev'/>
		  <qemu:arg value='socket,id=faultline-qmp,path=/run/faultline/vms/$1.qmp,server=on,wait=off'/>
		  <qemu:env name='LD_PRELOAD' value='/usr/lib/faultline/libfaultline-shim.so'/>
		  <qemu:env name='FAULTLINE_SHIM_SOCK' value='/run/faultline/vms/$1.shim'/>
		  <qemu:env name='FAULTLINE_SHIM_RAM' value='/dev/shm/lv/'/></qemu:commandline>"
	fi
	echo "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>$1</name>
	  <memory unit='MiB'>256</memory>$mb<devices>$3</devices>$cmd</domain>"
}
VU="<interface type='vhostuser'><source type='unix' path='/run/vu0' mode='client'/><model type='virtio'/></interface>"
# no daemon may be reached: any attempt fails loudly
export FAULTLINE_DAEMON_SOCK=/nonexistent/faultline/faultlined.sock

out=$(dom plain 0 "$VU" | "$FL" virt hook plain migrate begin - 2>&1); rc=$?
[ "$rc" = 0 ] && [ -z "$out" ] || fail "a domain that is not faultline's: exit $rc, '$out' (want 0 and nothing)"
echo "ok: not faultline's: passed untouched"

out=$(dom vu 1 "$VU" | "$FL" virt hook vu migrate begin - 2>&1); rc=$?
[ "$rc" = 1 ] || fail "prepared with a vhost-user interface: exit $rc, want 1: $out"
echo "$out" | grep -q "domain vu has 1 vhost-user device(s)" || fail "no line naming the device: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "more than one line: $out"
echo "$out" | grep -qi "daemon" && fail "a daemon was asked before the refusal: $out"
echo "ok: prepared, then given a vhost-user interface: refused in one line: $out"
echo PASS
