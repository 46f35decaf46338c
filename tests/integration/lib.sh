# Helpers for the integration tests (sourced). Exit 77 = skip.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
FL=$TOP/tools/faultline
SIM=$TOP/tools/guest-sim
SHIM=$TOP/shim/libfaultline-shim.so
FAKE=$TOP/tests/integration/fakepeer
FLD=$TOP/daemon/faultlined

need_root() {
	[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
	command -v ip >/dev/null || { echo "SKIP: iproute2 missing"; exit 77; }
}
fail() { echo "FAIL: $*"; exit 1; }
# jget FIELD < one-line JSON: a string or number value
jget() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
# wait_state ID STATE DIR: until faultline status shows the source in STATE
wait_state() {
	for i in $(seq 300); do
		"$FL" status "$1" --status-dir "$3" --json 2>/dev/null | grep -q "\"role\":\"source\"[^}]*\"state\":\"$2\"" && return 0
		sleep 0.05
	done
	return 1
}
# assert_progress FILE: the "progress:" lines of a run; within one phase (a
# pre-copy round, post-copy) the percentage never goes down
assert_progress() {
	awk '/^progress: / {
		key = $2; pct = $3
		if ($3 !~ /%$/) { key = $2 " " $3; pct = $4 }
		sub("%", "", pct); n++
		if ((key in last) && pct + 0 < last[key] - 0.05) { print "progress went down in " key ": " last[key] " -> " pct; bad = 1 }
		last[key] = pct
	} END { if (!n) print "no progress lines"; exit (bad || !n) }' "$1" || fail "progress: $(grep -m3 '^progress' "$1")"
}
# sim_vm NAME SIZE [guest-sim options]: a guest-sim with the shim, RAM in
# $W/NAME/ram0, control socket $W/NAME.ctl, shim socket $W/NAME.shim
sim_vm() {
	local name=$1 size=$2; shift 2
	mkdir -p "$W/$name"
	LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/$name/ FAULTLINE_SHIM_SOCK=$W/$name.shim \
		"$SIM" --ram "$W/$name/ram0" --ctl "$W/$name.ctl" --size "$size" "$@" >/dev/null 2>&1 &
	echo $! >> "$W/pids"
	for i in $(seq 100); do [ -S "$W/$name.shim" ] && [ -S "$W/$name.ctl" ] && break; sleep 0.05; done
	[ -S "$W/$name.shim" ] || fail "guest-sim $name did not start"
}
# keep_serial FILE: a guest console that shows trouble outlives the work dir
keep_serial() { local k=${FL_KEEP_DIR:-/tmp}/fl-serial-$(basename "$1")-$$; cp "$1" "$k" 2>/dev/null && echo "serial kept: $k"; tail -n 5 "$1"; }
# guest_selfcheck SERIAL [FROM_SEQ]: the test guest's own verdict
# (tests/vm/guest-work.c). Prints why and returns 1 when it found corruption
# or ran no full check. Only whole HB/VERIFY lines count: the guest kernel's
# console messages can land inside one of its lines, and the counts are
# cumulative, so a later whole line still carries any corruption. The guest
# runs on: its last line may be half written. With FROM_SEQ (the source's
# last heartbeat, on a console both hosts append to) the full check must
# have run after it.
guest_selfcheck() {
	local f=$1 from=${2:-} good bad torn i snap rc=0
	good='^(HB seq=[0-9]+ ops=[0-9]+ maxstall_ms=[0-9]+|VERIFY pages=[0-9]+) corrupt=[0-9]+$'
	snap=$(mktemp)
	verified() {
		tr -d '\r' < "$f" > "$snap"
		[ -z "$(tail -c 1 "$snap")" ] || sed -i '$d' "$snap"	# a line still being written
		awk -v s="HB seq=$from " -v any="${from:-y}" 'any == "y" || index($0, s) == 1 { any = "y" }
			any == "y" && /^VERIFY pages=[0-9]+ corrupt=[0-9]+$/ { ok = 1 } END { exit !ok }' "$snap"
	}
	for i in $(seq 50); do verified && break; sleep 0.1; done	# a whole one, not one a kernel message cut
	if grep -aq '^CORRUPT' "$snap"; then
		grep -a -m3 '^CORRUPT' "$snap"; keep_serial "$f"; echo "the guest found corrupt pages"; rc=1
	elif ! verified; then
		keep_serial "$f"; echo "no full self-check ran on the destination"; rc=1
	else
		bad=$(grep -aE "$good" "$snap" | grep -av ' corrupt=0$' | head -n 3)
		if [ -n "$bad" ]; then
			echo "$bad"; keep_serial "$f"; echo "the guest counted corruption"; rc=1
		fi
		torn=$(grep -aE '^(HB|VERIFY)' "$snap" | grep -aEv "$good" | head -n 1)
		[ -z "$torn" ] || echo "note: a guest console line cut by a kernel message: $torn"
	fi
	rm -f "$snap"
	return $rc
}
workdir() { W=$(mktemp -d /dev/shm/fl-it-XXXXXX); [ -n "${FL_KEEP:-}" ] || trap 'rm -rf "$W"' EXIT; }
# expect CODE PATTERN -- command...: exits CODE, its stderr matches PATTERN
expect() {
	code=$1 pat=$2; shift 3
	"$@" >"$W/out" 2>"$W/err"; rc=$?
	msg=$(cat "$W/err")
	[ "$rc" = "$code" ] || fail "'$*' exited $rc, want $code: $msg"
	echo "$msg" | grep -q -- "$pat" || fail "'$*' said '$msg', want /$pat/"
	[ "$rc" -lt 128 ] || fail "'$*' crashed"
	echo "ok: exit $rc: $(head -n 1 "$W/err")"
}
# make_pki DIR CANAME IP[,IP...] [DAYS_CLIENT]: a CA and server/client certificates in
# QEMU's and libvirt's layout, the server's naming each IP
make_pki() {
	local d=$1
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca-key.pem" \
		-out "$d/ca-cert.pem" -subj "/CN=$2" -days 30 2>/dev/null || fail "openssl: CA"
	for who in server client; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$who-key.pem" \
			-out "$d/$who.csr" -subj "/CN=$who" 2>/dev/null || fail "openssl: $who key"
		printf 'subjectAltName=%s\n' "$(echo "$3" | sed 's/\([^,]*\)/IP:\1/g')" > "$d/ext"
		days=30; [ "$who" = client ] && days=${4:-30}
		openssl x509 -req -in "$d/$who.csr" -CA "$d/ca-cert.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
			-out "$d/$who-cert.pem" -days "$days" -extfile "$d/ext" 2>/dev/null || fail "openssl: $who cert"
	done
	chmod 600 "$d"/*-key.pem
}
# assert_migration JSONLINE: completed, no corruption, checksums equal
assert_migration() {
	line=$1
	st=$(echo "$line" | jget state); cp=$(echo "$line" | jget corrupt_pages)
	cm=$(echo "$line" | jget checksum_match)
	src=$(echo "$line" | jget src_sha256); dst=$(echo "$line" | jget dst_sha256)
	tot=$(echo "$line" | jget total_pages); pc=$(echo "$line" | jget postcopy_pages)
	zp=$(echo "$line" | jget zero_pages); rm_=$(echo "$line" | jget removed_pages)
	echo "state=$st corrupt_pages=$cp checksum_match=$cm pages=$tot data=$pc zero=$zp"
	[ "$st" = completed ] || fail "state is '$st'"
	[ "$cp" = 0 ] || fail "corrupt_pages=$cp"
	[ "$cm" = true ] || fail "RAM checksum differs: source $src, destination $dst"
	cl=$(echo "$line" | jget clean_pages); rp=$(echo "$line" | jget restart_pages)
	# every page placed exactly once: fetched, zero, removed, current from
	# pre-copy, or found present by an agent that replaced one that died
	[ $((pc + zp + rm_ + cl + ${rp:-0})) -eq "$tot" ] || fail "placed $((pc + zp + rm_ + cl + ${rp:-0})) of $tot pages"
}

# qemu_vm NAME RAMDIR NODES MEM [EXTRA...]: an unmodified QEMU (TCG) with the
# shim preloaded, guest RAM in RAMDIR/NAME/ram* (one shared backend file per
# guest node, NODES 1 or 2), QMP, shim socket and serial log in $W. Boots the
# test guest when $G (tests/vm/build-guest output) is set.
qemu_vm() {
	local name=$1 ram=$2 nodes=$3 mem=$4 half
	shift 4
	mkdir -p "$ram/$name"
	local args=()
	if [ "$nodes" = 2 ]; then
		half=$(( ${mem%M} / 2 ))M
		# QEMU_HOSTNODES=N: both backends bound to host node N, as a NUMA-tuned guest
		local pol=${QEMU_HOSTNODES:+,host-nodes=$QEMU_HOSTNODES,policy=bind}
		args=(-smp 2
		      -object memory-backend-file,id=ram0,size=$half,mem-path=$ram/$name/ram0,share=on$pol
		      -object memory-backend-file,id=ram1,size=$half,mem-path=$ram/$name/ram1,share=on$pol
		      -numa node,nodeid=0,cpus=0,memdev=ram0 -numa node,nodeid=1,cpus=1,memdev=ram1)
	else
		args=(-object memory-backend-file,id=ram0,size=$mem,mem-path=$ram/$name/ram0,share=on
		      -machine memory-backend=ram0)
	fi
	[ -n "${G:-}" ] && args+=(-kernel "$G/vmlinuz" -initrd "$G/initrd.gz" -append "console=ttyS0 quiet panic=-1 ${GUEST_ARGS:-}")
	# QEMU_NETNS=NS: on that "host" (ip netns)
	${QEMU_NETNS:+ip netns exec $QEMU_NETNS} env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$ram/$name/ FAULTLINE_SHIM_SOCK=$W/$name.shim \
		qemu-system-x86_64 -machine pc,accel=tcg -m "$mem" "${args[@]}" -display none \
		-monitor none -serial file:"$W/$name.serial" -qmp unix:"$W/$name.qmp",server=on,wait=off \
		"$@" >"$W/$name.log" 2>&1 &
	echo $! > "$W/$name.pid"
}
qemu_stop_all() { for p in "$W"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; rm -f "$p"; done; }
wait_sock() { for i in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }

# ---- two hosts on one machine, a faultlined each ----
# two_hosts: two network namespaces joined by veth ($A at $IPA, $B at $IPB),
# torn down (with the daemons and $W/pids) on exit
two_hosts() {
	r=$((RANDOM % 200 + 20))
	A=fl-da-$$ B=fl-db-$$ IPA=10.89.$r.1 IPB=10.89.$r.2
	cleanup() {
		kill $(cat "$W/pids" 2>/dev/null) 2>/dev/null
		[ -n "${PA:-}" ] && kill "$PA" 2>/dev/null
		[ -n "${PB:-}" ] && kill "$PB" 2>/dev/null
		qemu_stop_all
		pkill -f "mem-path=$W/.*/faultline-incoming-" 2>/dev/null	# QEMUs a daemon started
		sleep 0.3
		ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null
		[ -n "${FL_KEEP:-}" ] || rm -rf "$W"
	}
	trap cleanup EXIT
	ip netns add $A && ip netns add $B || fail "cannot create network namespaces"
	ip link add va-$$ netns $A type veth peer name vb-$$ netns $B
	ip -n $A addr add $IPA/24 dev va-$$ && ip -n $A link set va-$$ up && ip -n $A link set lo up
	ip -n $B addr add $IPB/24 dev vb-$$ && ip -n $B link set vb-$$ up && ip -n $B link set lo up
	mkdir -p /etc/faultline /run/faultline /var/lib/faultline	# mount points; each host binds its own
}
# fld_conf HOST IP PKI [POSTCOPY_MBPS PRECOPY_MBPS]: a faultlined.conf with x509 (or PKI=psk:FILE)
fld_conf() {
	mkdir -p "$W/$1/etc" "$W/$1/run" "$W/$1/lib"
	cat > "$W/$1/etc/faultlined.conf" <<-EOF
	[daemon]
	listen = $2:7700
	log_level = info
	shim_lib = $SHIM
	recover_timeout = 600
	[tls]
	$(case $3 in psk:*) echo "psk_file = ${3#psk:}";; *) echo "x509_dir = $3";; esac)
	[peers]
	allow = 10.89.$r.0/24
	[bandwidth]
	postcopy_mbps = ${4:-0}
	precopy_mbps = ${5:-0}
	EOF
}
# fld_restart HOST NETNS
fld_restart() {
	local pid; eval "pid=\$P$1"
	kill "$pid"; wait "$pid" 2>/dev/null
	fld "$1" "$2"
}
# fld HOST NETNS: faultlined in its own mount namespace (its own /etc/faultline,
# /run/faultline, /var/lib/faultline); sets P<HOST>
fld() {
	local before; before=$(grep -c listening "$W/$1.log" 2>/dev/null)
	ip netns exec "$2" unshare --mount --propagation private sh -ec "
		mount --bind '$W/$1/etc' /etc/faultline
		mount --bind '$W/$1/run' /run/faultline
		mount --bind '$W/$1/lib' /var/lib/faultline
		exec '$FLD'" >>"$W/$1.log" 2>&1 &
	local pid=$!
	for i in $(seq 100); do [ "$(grep -c listening "$W/$1.log")" -gt "${before:-0}" ] && break; sleep 0.05; done
	[ "$(grep -c listening "$W/$1.log")" -gt "${before:-0}" ] || fail "faultlined on $1 did not start: $(cat "$W/$1.log")"
	# ip netns exec, unshare and sh each exec the next: one pid, the daemon's
	eval "P$1=$pid"
}
# vm_pair NAME PORT [RATE [SIZE]]: on two_hosts, a running guest-sim on A,
# its destination waiting on B (device state at IPB:PORT), both registered
# with their daemons
vm_pair() {
	mkdir -p "$W/$1A" "$W/$1B"
	ip netns exec $A env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/$1A/ FAULTLINE_SHIM_SOCK=$W/$1A.shim \
		"$SIM" --ram "$W/$1A/ram0" --ctl "$W/$1A.ctl" --size ${4:-64M} --rate ${3:-3000} >/dev/null 2>&1 &
	echo $! >> "$W/pids"
	ip netns exec $B env LD_PRELOAD=$SHIM FAULTLINE_SHIM_RAM=$W/$1B/ FAULTLINE_SHIM_SOCK=$W/$1B.shim \
		"$SIM" --ram "$W/$1B/ram0" --ctl "$W/$1B.ctl" --size ${4:-64M} --incoming $IPB:$2 >/dev/null 2>&1 &
	echo $! >> "$W/pids"
	for i in $(seq 100); do [ -S "$W/$1A.ctl" ] && [ -S "$W/$1B.shim" ] && break; sleep 0.05; done
	on A "$FL" vm add $1 --ctl "$W/$1A.ctl" --shim "$W/$1A.shim" || fail "vm add $1 on A"
	on B "$FL" vm add $1 --ctl "$W/$1B.ctl" --shim "$W/$1B.shim" --uri $IPB:$2 || fail "vm add $1 on B"
}
# on HOST CMD...: in that host's network and mount namespaces
on() {
	local h=$1; shift
	local pid; eval "pid=\$P$h"
	nsenter -t "$pid" -n -m -- "$@"
}
