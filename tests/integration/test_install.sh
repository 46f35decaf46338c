#!/bin/bash
# faultline as an operator installs it: `make install DESTDIR=...` puts every
# part where the Makefile says; the installed faultline and faultlined say
# their version; the installed `faultline demo` migrates a live guest with
# the installed shim and guest-sim (not the build tree's); bash completion
# offers every subcommand; `make uninstall` leaves nothing behind, except a
# configuration the operator changed (and says so).
. "$(dirname "$0")/lib.sh"
need_root
workdir
R=$W/root
make -C "$TOP" -s install DESTDIR="$R" >"$W/install.log" 2>&1 || { cat "$W/install.log"; fail "make install failed"; }
ver=$(sed -n 's/^#define FL_VERSION "\(.*\)"/\1/p' "$TOP/include/faultline/version.h")
for f in usr/local/bin/faultline usr/local/sbin/faultlined usr/local/lib/faultline/libfaultline-shim.so \
	usr/local/libexec/faultline/guest-sim usr/local/libexec/faultline/faultline-libvirt-hook \
	usr/local/lib/libfaultline.so.1 usr/local/lib/pkgconfig/faultline.pc usr/local/include/faultline/version.h \
	usr/local/lib/systemd/system/faultlined.service etc/faultline/faultlined.conf \
	usr/local/share/man/man8/faultline.8 usr/local/share/man/man8/faultlined.8 \
	usr/local/share/man/man5/faultlined.conf.5 usr/local/share/man/man7/faultline-shim.7 \
	usr/local/share/bash-completion/completions/faultline; do
	[ -e "$R/$f" ] || fail "make install did not install /$f"
done
[ "$(readlink "$R/etc/libvirt/hooks/qemu.d/faultline")" = /usr/local/libexec/faultline/faultline-libvirt-hook ] ||
	fail "the libvirt hook drop-in points at '$(readlink "$R/etc/libvirt/hooks/qemu.d/faultline")'"
grep -q "^ExecStart=/usr/local/sbin/faultlined " "$R/usr/local/lib/systemd/system/faultlined.service" ||
	fail "the unit does not start the installed daemon: $(grep ExecStart "$R/usr/local/lib/systemd/system/faultlined.service")"
grep -q '|| fl=/usr/local/bin/faultline$' "$R/usr/local/libexec/faultline/faultline-libvirt-hook" ||
	fail "the installed hook does not name the installed faultline"
echo "ok: $(find "$R" -type f | wc -l) files and $(find "$R" -type l | wc -l) links installed"

# --version: the release of version.h, with the protocols
[ "$("$R/usr/local/bin/faultline" --version | head -n1)" = "faultline $ver" ] || fail "faultline --version: $("$R/usr/local/bin/faultline" --version)"
[ "$("$R/usr/local/sbin/faultlined" --version | head -n1)" = "faultlined $ver" ] || fail "faultlined --version"
"$R/usr/local/bin/faultline" --version | grep -q "agent protocol [0-9], daemon protocol [0-9]" || fail "no protocols in --version"
echo "ok: $("$R/usr/local/bin/faultline" --version | tr '\n' ' ')"

# the installed demo: a live guest migrated, checked by itself and by checksum
(cd "$W" && timeout 300 "$R/usr/local/bin/faultline" demo --size 128M --workdir "$W/demo") >"$W/demo.out" 2>&1 ||
	{ tail -n 20 "$W/demo.out"; fail "the installed faultline demo failed"; }
grep -q "^demo: shim $R/usr/local/lib/faultline/libfaultline-shim.so, guest $R/usr/local/libexec/faultline/guest-sim" "$W/demo.out" ||
	fail "the installed demo did not use the installed parts: $(grep '^demo: shim' "$W/demo.out")"
grep -q "corrupt pages 0; RAM checksum matches the source at switchover" "$W/demo.out" ||
	fail "the installed demo's guest: $(grep guest: "$W/demo.out")"
echo "ok: installed demo: $(grep -m1 '^migrated' "$W/demo.out"); $(grep '^guest:' "$W/demo.out")"

# bash completion: every subcommand faultline --help lists, the virt ones,
# options read from a command's --help, faultlined's options
comp() {	# comp WORD...: what completing the last word offers
	PATH=$R/usr/local/bin:$R/usr/local/sbin:$PATH bash -c '
		[ -f /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion
		. "$0"
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		complete -p "$1" >/dev/null || exit 3
		f=$(complete -p "$1" | sed "s/.*-F \([^ ]*\) .*/\1/"); $f; printf "%s\n" "${COMPREPLY[@]}"' \
		"$R/usr/local/share/bash-completion/completions/faultline" "$@"
}
want=$("$R/usr/local/bin/faultline" --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ "$(echo "$want" | wc -l)" -ge 15 ] || fail "faultline --help lists only: $want"
got=$(comp faultline "")
for c in $want list show; do echo "$got" | grep -qx -- "$c" || fail "completion does not offer '$c' (offers: $(echo $got))"; done
for c in prepare migrate drain list show abort force-complete recover hook; do
	comp faultline virt "" | grep -qx "$c" || fail "completion does not offer 'virt $c'"
done
[ "$(comp faultline dest --tr)" = --transport ] || fail "faultline dest --tr completes to '$(comp faultline dest --tr)'"
comp faultline virt migrate web1 --timeout- | grep -qx -- --timeout-action || fail "no --timeout-action for virt migrate"
[ "$(comp faultline source --transport r)" = rdma ] || fail "--transport r completes to '$(comp faultline source --transport r)'"
[ "$(comp faultlined --ver)" = --version ] || fail "faultlined --ver completes to '$(comp faultlined --ver)'"
echo "ok: completion offers $(echo "$want" | wc -l) subcommands, virt's, and options from --help"

# uninstall: nothing left
make -C "$TOP" -s uninstall DESTDIR="$R" >"$W/un.log" 2>&1 || { cat "$W/un.log"; fail "make uninstall failed"; }
left=$(find "$R" -mindepth 1 2>/dev/null | head -n 5)	# (the emptied root goes too)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "ok: make uninstall left nothing"
# ... but an operator's changed configuration stays, and it says so
make -C "$TOP" -s install DESTDIR="$R" >"$W/install.log" 2>&1 || fail "make install (again) failed"
echo "psk_file = /etc/faultline/keys.psk" >> "$R/etc/faultline/faultlined.conf"
make -C "$TOP" -s uninstall DESTDIR="$R" >"$W/un.log" 2>&1 || fail "make uninstall (changed config) failed"
grep -q "faultlined.conf was changed: left in place" "$W/un.log" || fail "uninstall did not say it kept the config: $(cat "$W/un.log")"
[ "$(find "$R" -type f)" = "$R/etc/faultline/faultlined.conf" ] || fail "after uninstall: $(find "$R" -type f | head -n 5)"
echo "ok: a changed faultlined.conf is left in place: $(cat "$W/un.log")"
echo PASS
