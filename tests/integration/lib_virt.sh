# Two libvirt "hosts" on one machine, a faultlined beside each (sourced
# after lib.sh). Each host is a network namespace (two_hosts) plus a
# mount and UTS namespace held by a sleeper: its own /etc/libvirt,
# /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /run/faultline,
# /etc/faultline, /var/lib/faultline, a tmpfs for memory_backing_dir, a
# host_uuid, libvirtd on IP:16509 with auth none (tests only).
# ../shared/notes/libvirt-test-bed.md has why each setting is there.
VIRT_CACHE=/var/cache/faultline/libvirt	# capabilities probe (15 s) kept between runs
HOOK=$TOP/tools/faultline-libvirt-hook

need_libvirt() {
	command -v libvirtd >/dev/null && command -v virsh >/dev/null ||
		{ echo "SKIP: libvirt is not installed (scripts/install-deps installs it)"; exit 77; }
	command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
	command -v nsenter >/dev/null && command -v unshare >/dev/null || { echo "SKIP: no nsenter/unshare"; exit 77; }
}

# virt_host H NETNS IP: the host's namespaces, libvirtd and faultlined
# (PSK in $W/keys.psk, made by the first call); sets H<H> (the holder's pid)
virt_host() {
	local h=$1 ns=$2 ip=$3 d=$W/$1
	mkdir -p /run/libvirt "$VIRT_CACHE" "$d"/{libvirt-etc,libvirt-run,libvirt-lib,libvirt-log,ram,etc,run,lib}
	[ -s "$W/keys.psk" ] || {
		printf 'faultline:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$W/keys.psk"
		chmod 600 "$W/keys.psk"; }
	cp -a /etc/libvirt/. "$d/libvirt-etc/"
	mkdir -p "$d/libvirt-etc/hooks/qemu.d"
	ln -sf "$HOOK" "$d/libvirt-etc/hooks/qemu.d/faultline"
	cat >> "$d/libvirt-etc/libvirtd.conf" <<-EOF
	listen_tls = 0
	listen_tcp = 1
	listen_addr = "$ip"
	auth_tcp = "none"
	host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
	log_outputs = "3:file:$d/libvirtd.log"
	EOF
	cat >> "$d/libvirt-etc/qemu.conf" <<-EOF
	user = "root"
	group = "root"
	clear_emulator_capabilities = 0
	memory_backing_dir = "/var/lib/libvirt/qemu/ram"
	cgroup_controllers = [ ]
	security_driver = "none"
	stdio_handler = "file"
	EOF
	fld_conf "$h" "$ip" "psk:$W/keys.psk" "${VIRT_POSTCOPY_MBPS:-0}" "${VIRT_PRECOPY_MBPS:-0}"
	ip netns exec "$ns" unshare --mount --uts --propagation private sh -ec "
		hostname lv-$h
		mount --bind '$d/libvirt-etc' /etc/libvirt
		mount --bind '$d/libvirt-run' /run/libvirt
		mount --bind '$d/libvirt-lib' /var/lib/libvirt
		mount --bind '$d/libvirt-log' /var/log/libvirt
		mount --bind '$VIRT_CACHE' /var/cache/libvirt
		mkdir -p /var/lib/libvirt/qemu/ram
		mount -t tmpfs -o size=2g fl-virt-ram /var/lib/libvirt/qemu/ram
		mount --bind '$d/etc' /etc/faultline
		mount --bind '$d/run' /run/faultline
		mount --bind '$d/lib' /var/lib/faultline
		echo ready
		exec sleep infinity" > "$d/holder.out" 2>&1 &
	local pid=$!
	echo $pid >> "$W/pids"
	for i in $(seq 100); do grep -q ready "$d/holder.out" && break; sleep 0.05; done
	grep -q ready "$d/holder.out" || fail "host $h: cannot set up its namespaces: $(cat "$d/holder.out")"
	eval "H$h=$pid"
	vh "$h" libvirtd --listen --pid-file "$d/libvirtd.pid" > "$d/libvirtd.out" 2>&1 &
	echo $! >> "$W/pids"
	for i in $(seq 600); do vh "$h" virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
	vh "$h" virsh -q -c qemu:///system version >/dev/null 2>&1 ||
		fail "libvirtd on $h did not start: $(tail -n 5 "$d/libvirtd.out" "$d/libvirtd.log")"
	virt_fld "$h"
}
# virt_fld H: (again) the host's faultlined; sets P<H>
virt_fld() {
	local before; before=$(grep -c listening "$W/$1.log" 2>/dev/null)
	local pid; eval "pid=\$H$1"
	nsenter -t "$pid" -n -m -u -- "$FLD" >> "$W/$1.log" 2>&1 &	# nsenter execs it: \$! is the daemon
	echo $! >> "$W/pids"
	eval "P$1=$!"
	for i in $(seq 100); do [ "$(grep -c listening "$W/$1.log")" -gt "${before:-0}" ] && break; sleep 0.05; done
	[ "$(grep -c listening "$W/$1.log")" -gt "${before:-0}" ] || fail "faultlined on $1 did not start: $(cat "$W/$1.log")"
}
# vh H CMD...: in that host's network, mount and UTS namespaces
vh() {
	local h=$1; shift
	local pid; eval "pid=\$H$h"
	nsenter -t "$pid" -n -m -u -- "$@"
}
# virt_setup: root, libvirt, the test guest ($G), both hosts
virt_setup() {
	need_root
	need_libvirt
	workdir
	G=$("$TOP/tests/vm/build-guest" 2>"$W/build.err") || { cat "$W/build.err"; fail "cannot build the test guest"; }
	virt_hosts
}
# VF H ARGS...: faultline virt ARGS on host H
VF() { vh "$1" env FAULTLINE_DAEMON_SOCK=/run/faultline/faultlined.sock "$FL" virt "${@:2}"; }
# the domains (their QEMUs are libvirtd's children, not ours), then libvirtd
virt_cleanup() {
	local h p
	for h in A B; do
		eval "p=\${H$h:-}"
		[ -n "$p" ] || continue
		for dom in $(vh $h virsh -q list --name 2>/dev/null); do vh $h virsh -q destroy "$dom" >/dev/null 2>&1; done
		[ -s "$W/$h/libvirtd.pid" ] && kill "$(cat "$W/$h/libvirtd.pid")" 2>/dev/null
	done
}
virt_hosts() {
	two_hosts
	trap 'virt_cleanup; cleanup' EXIT
	virt_host A $A $IPA
	virt_host B $B $IPB
	SRC=qemu+tcp://$IPA/system DST=qemu+tcp://$IPB/system
}
# virt_domain H NAME [MEM_MIB [DISK]]: the test guest (tests/vm) defined
# on H, not yet prepared for faultline; its serial console in
# $W/NAME.serial; DISK: a qcow2 image (that host's path) as vda;
# VIRT_EXTRA: elements after <vcpu> (cputune, numatune, cpu)
virt_domain() {
	cat > "$W/$2.xml" <<-EOF
	<domain type='qemu'>
	  <name>$2</name>
	  <memory unit='MiB'>${3:-256}</memory>
	  <vcpu>1</vcpu>${VIRT_EXTRA:-}
	  <os>
	    <type arch='x86_64' machine='pc'>hvm</type>
	    <kernel>$G/vmlinuz</kernel>
	    <initrd>$G/initrd.gz</initrd>
	    <cmdline>console=ttyS0 quiet panic=-1 ${GUEST_ARGS:-}</cmdline>
	  </os>
	  <on_crash>destroy</on_crash>
	  <devices>
	    <emulator>$(command -v qemu-system-x86_64)</emulator>
	    <serial type='file'><source path='$W/$2.serial' append='on'/><target port='0'/></serial>
	    ${4:+<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$4'/><target dev='vda' bus='virtio'/></disk>}
	    <memballoon model='none'/>
	  </devices>
	</domain>
	EOF
	vh "$1" virsh -q define "$W/$2.xml" >/dev/null || fail "cannot define $2 on $1"
}
# guest_ok SERIAL LAST_SRC_SEQ: heartbeats continue past the source's, a
# full self-check ran, no corruption
guest_ok() {
	local f=$1 last=$2 first
	for i in $(seq 300); do
		[ "$(grep -c '^HB' "$f" 2>/dev/null)" -ge $((${last:-0} + 8)) ] && grep -q '^VERIFY' "$f" && break
		sleep 0.1
	done
	first=$(grep -o 'HB seq=[0-9]*' "$f" | awk -F= -v l="${last:-0}" '$2 > l { print $2; exit }')
	[ -n "$first" ] || fail "no heartbeat after the source's last ($last) in $f: $(tail -n 3 "$f")"
	guest_selfcheck "$f" "$last" || fail "the guest's self-check (above)"
	echo "heartbeats: source's last $last, then $(grep '^HB' "$f" | tail -n 1)"
}
last_hb() { grep -o 'HB seq=[0-9]*' "$1" 2>/dev/null | tail -n 1 | cut -d= -f2; }
wait_hb() {
	for i in $(seq 400); do grep -q "HB seq=$2 " "$1" 2>/dev/null && return 0; sleep 0.25; done
	fail "the guest did not boot: $(tail -n 3 "$1")"
}
