# Helpers for the integration tests (sourced). Exit 77 = skip.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
FL=$TOP/tools/faultline
SIM=$TOP/tools/guest-sim
SHIM=$TOP/shim/libfaultline-shim.so
FAKE=$TOP/tests/integration/fakepeer

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
workdir() { W=$(mktemp -d /dev/shm/fl-it-XXXXXX); trap 'rm -rf "$W"' EXIT; }
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
	cl=$(echo "$line" | jget clean_pages)
	# every page placed exactly once: fetched, zero, removed, or current from pre-copy
	[ $((pc + zp + rm_ + cl)) -eq "$tot" ] || fail "placed $((pc + zp + rm_ + cl)) of $tot pages"
}
