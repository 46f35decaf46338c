#!/bin/bash
# The man pages: each renders without a warning (groff -ww, mandoc -T lint),
# and says what the programs have: every subcommand of `faultline --help`,
# every option of `faultlined --help`, every faultlined.conf key the daemon
# reads, every variable the shim reads.
. "$(dirname "$0")/lib.sh"
workdir
M=$TOP/man
rx() { printf '%s' "$1" | sed 's/-/\\\\-/g'; }	# as roff writes it: \-
command -v groff >/dev/null || fail "no groff (man-db's groff-base; scripts/install-deps installs it)"
command -v mandoc >/dev/null || fail "no mandoc (scripts/install-deps installs it)"
for p in faultline.8 faultlined.8 faultlined.conf.5 faultline-shim.7; do
	[ -f "$M/$p" ] || fail "no man page $p"
	out=$(groff -ww -z -man "$M/$p" 2>&1)
	[ -z "$out" ] || fail "groff -ww on $p: $out"
	out=$(mandoc -T lint -W style "$M/$p" 2>&1)
	[ -z "$out" ] || fail "mandoc -T lint on $p: $out"
	out=$(MANWIDTH=80 man -l "$M/$p" 2>&1 >/dev/null)
	[ -z "$out" ] || fail "man -l $p: $out"
	# the version in the header is the release's
	grep -q "^\.TH .* \"faultline $("$FL" --version | head -n1 | cut -d' ' -f2)\"" "$M/$p" || fail "$p: .TH names another release"
done
echo "ok: 4 man pages lint clean (groff -ww, mandoc -T lint -W style, man -l)"

# faultline(8): a section for every subcommand
for c in $("$FL" --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p'); do
	grep -q "^\.SS \"faultline .*\b$(rx "$c")\b" "$M/faultline.8" || fail "faultline(8) has no section for '$c'"
done
for c in prepare migrate drain list show abort force-complete recover hook; do
	grep -q "^\.SS \"faultline virt .*\b$(rx "$c")\b" "$M/faultline.8" || fail "faultline(8) has no 'virt $c'"
done
# ... and every option a command's --help names
for c in demo migrate "vm" qemu source dest status abort force-complete recover check "virt prepare" "virt migrate" "virt drain"; do
	for o in $("$FL" $c --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
		grep -q -- "$(rx "$o")" "$M/faultline.8" || fail "faultline(8) lacks '$o' of 'faultline $c'"
	done
done
echo "ok: faultline(8) has every subcommand and every option of their --help"

# faultlined(8): its options; faultlined.conf(5): every key conf.c reads
for o in $("$FLD" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
	grep -q -- "$(rx "$o")" "$M/faultlined.8" || fail "faultlined(8) lacks '$o'"
done
keys=$(sed -n 's/.*IS("\([a-z]*\)", "\([a-z_]*\)").*/\1 \2/p' "$TOP/daemon/conf.c")
[ "$(echo "$keys" | wc -l)" -ge 10 ] || fail "read only $(echo "$keys" | wc -l) keys from conf.c"
while read -r sec key; do
	grep -q "^\.SH \"SECTION \[$sec\]\"" "$M/faultlined.conf.5" || fail "faultlined.conf(5) has no [$sec]"
	grep -q "^\.BI $key " "$M/faultlined.conf.5" || fail "faultlined.conf(5) lacks $key in [$sec]"
done <<<"$keys"
echo "ok: faultlined(8) has its options; faultlined.conf(5) has all $(echo "$keys" | wc -l) keys"

# faultline-shim(7): every environment variable the shim reads
for v in $(grep -o 'getenv("[A-Z_]*")' "$TOP/shim/shim.c" | sed 's/getenv("\(.*\)")/\1/' | sort -u); do
	grep -q "^\.B $v\$" "$M/faultline-shim.7" || fail "faultline-shim(7) lacks $v"
done
echo "ok: faultline-shim(7) has every variable the shim reads"
echo PASS
