#!/bin/bash
# The Debian packages: `make deb` builds faultline, libfaultline1 and
# libfaultline-dev from the tree with debhelper, lintian finds no error; the
# three install with dpkg on this machine; /usr/bin/faultline demo migrates
# a live guest with the packaged shim; the unit verifies; the -dev package
# builds an embedder; purged, nothing of them is left.
. "$(dirname "$0")/lib.sh"
need_root
workdir
for c in dpkg-buildpackage dh lintian; do
	command -v $c >/dev/null || fail "no $c (scripts/install-deps installs debhelper, lintian)"
done
if dpkg-query -W -f='${Status}' faultline 2>/dev/null | grep -q "ok installed"; then
	echo "SKIP: a faultline package is already installed on this host; not replacing it"; exit 77
fi
trap 'dpkg --purge faultline libfaultline-dev libfaultline1 >/dev/null 2>&1; rm -rf "$W"' EXIT
ver=$(sed -n 's/^#define FL_VERSION "\(.*\)"/\1/p' "$TOP/include/faultline/version.h")
t0=$(date +%s)
make -C "$TOP" -s deb DEBDIR="$W/deb" >"$W/deb.log" 2>&1 || { tail -n 30 "$W/deb.log"; fail "make deb failed"; }
for p in faultline libfaultline1 libfaultline-dev; do
	[ -f "$W/deb/${p}_${ver}_amd64.deb" ] || fail "make deb did not build ${p}_${ver}_amd64.deb: $(ls "$W/deb")"
done
grep -E "^E: " "$W/deb.log" && fail "lintian errors"
echo "ok: built in $(($(date +%s) - t0)) s: $(cd "$W/deb" && ls *.deb | tr '\n' ' ')"
echo "lintian: $(grep -cE '^[WI]: ' "$W/deb.log") warnings/notes, 0 errors"
deps=$(dpkg-deb -f "$W/deb/faultline_${ver}_amd64.deb" Depends)
for d in libjson-c5 libssl3 libvirt0 libibverbs1; do
	echo "$deps" | grep -q "$d" || fail "faultline's Depends lack $d (from the shared libraries): $deps"
done
dpkg-deb -f "$W/deb/libfaultline-dev_${ver}_amd64.deb" Depends | grep -q "libfaultline1 (= $ver)" ||
	fail "libfaultline-dev does not depend on its libfaultline1"
echo "ok: faultline depends on: $deps"

dpkg -i "$W/deb/faultline_${ver}_amd64.deb" "$W/deb/libfaultline1_${ver}_amd64.deb" \
	"$W/deb/libfaultline-dev_${ver}_amd64.deb" >"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log"; fail "dpkg -i failed"; }
[ "$(/usr/bin/faultline --version | head -n1)" = "faultline $ver" ] || fail "/usr/bin/faultline --version"
[ "$(/usr/sbin/faultlined --version | head -n1)" = "faultlined $ver" ] || fail "/usr/sbin/faultlined --version"
getent group faultline >/dev/null || fail "no group faultline after install"
[ "$(man -w faultline)" = /usr/share/man/man8/faultline.8.gz ] || fail "man faultline: $(man -w faultline 2>&1)"
for m in faultlined faultlined.conf faultline-shim; do man -w "$m" >/dev/null || fail "no man page $m"; done
out=$(systemd-analyze verify /lib/systemd/system/faultlined.service 2>&1) && [ -z "$out" ] ||
	fail "systemd-analyze verify of the packaged unit: $out"
[ -x "$(readlink -f /etc/libvirt/hooks/qemu.d/faultline)" ] || fail "the packaged libvirt hook is not executable"
echo "ok: installed; faultline --version, man pages, unit, hook, group faultline"

(cd "$W" && timeout 300 /usr/bin/faultline demo --size 128M --workdir "$W/demo") >"$W/demo.out" 2>&1 ||
	{ tail -n 20 "$W/demo.out"; fail "faultline demo from /usr/bin failed"; }
grep -q "^demo: shim /usr/lib/x86_64-linux-gnu/faultline/libfaultline-shim.so, guest /usr/libexec/faultline/guest-sim" \
	"$W/demo.out" || fail "the packaged demo did not use the packaged parts: $(grep '^demo: shim' "$W/demo.out")"
grep -q "corrupt pages 0; RAM checksum matches the source at switchover" "$W/demo.out" ||
	fail "the packaged demo's guest: $(grep guest: "$W/demo.out")"
echo "ok: /usr/bin/faultline demo: $(grep -m1 '^migrated' "$W/demo.out"); $(grep '^guest:' "$W/demo.out")"

# the -dev package: an embedder builds with pkg-config, linked to the packaged library
cc -std=gnu11 -Wall -Werror -o "$W/embed" "$TOP/tests/integration/embed.c" $(pkg-config --cflags --libs faultline) ||
	fail "an embedder does not build against libfaultline-dev"
ldd "$W/embed" | grep -q "libfaultline.so.1 => /lib/x86_64-linux-gnu/libfaultline.so.1\|libfaultline.so.1 => /usr/lib/x86_64-linux-gnu/libfaultline.so.1" ||
	fail "the embedder is not linked to the packaged library: $(ldd "$W/embed" | grep faultline)"
echo "ok: libfaultline-dev: embed.c built with $(pkg-config --libs faultline)"

dpkg --purge faultline libfaultline-dev libfaultline1 >"$W/purge.log" 2>&1 || { cat "$W/purge.log"; fail "dpkg --purge failed"; }
for f in /usr/bin/faultline /usr/sbin/faultlined /etc/faultline /etc/libvirt/hooks/qemu.d/faultline \
	/usr/lib/x86_64-linux-gnu/faultline /usr/libexec/faultline /usr/include/faultline /lib/systemd/system/faultlined.service; do
	[ -e "$f" ] || [ -L "$f" ] && fail "$f is left after purge"
done
echo "ok: purged, nothing left"
echo PASS
