#!/usr/bin/env bash
# In-VM test runner (kselftest style). Runs every test_* function of the
# tests/vm/[0-9]*.sh files, in file order, and writes KTAP to stdout.
#
#   run.sh [PATTERN]   only tests whose name matches the extended regex
#
# VM_SHARD=K/N runs the share K (0..N-1) of the test files: every N-th file
# from the K-th on, plus the last checks (9x-*.sh: unload, kernel log),
# which every share runs. Every file is still sourced (they share helpers).
#
# A test function passes by returning 0, is skipped by returning $KSFT_SKIP,
# and fails otherwise; what it prints becomes KTAP diagnostics.
set -uo pipefail

TESTS_DIR=$(cd "$(dirname "$0")" && pwd)
export BLKSNAP_ROOT=${BLKSNAP_ROOT:-$(cd "$TESTS_DIR/../.." && pwd)}
source "$TESTS_DIR/lib.sh"
pattern=${1:-.}

# Drivers the tests use whose device nodes appear only once they are
# loaded: built in on the test kernel, modules on a distribution's.
modprobe -qa loop zram dm_mod 2>/dev/null || true

files=("$TESTS_DIR"/[0-9]*.sh)
shard=${VM_SHARD:-0/1}
shard_k=${shard%/*} shard_n=${shard#*/}
names=()
i=0
for f in "${files[@]}"; do
	# shellcheck source=/dev/null
	source "$f"
	case ${f##*/} in
	9[0-9]-*) ;;
	*)
		i=$((i + 1))
		[ $(((i - 1) % shard_n)) -eq "$shard_k" ] || continue
		;;
	esac
	while read -r name; do
		[[ $name =~ $pattern ]] && names+=("$name")
	done < <(sed -nE 's/^(test_[A-Za-z0-9_]+)\(\).*/\1/p' "$f")
done

echo "KTAP version 1"
echo "1..${#names[@]}"
n=0
for name in "${names[@]}"; do
	n=$((n + 1))
	out=$( (set -e; "$name") 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "ok $n ${name#test_}"
	elif [ "$rc" -eq "$KSFT_SKIP" ]; then
		echo "ok $n ${name#test_} # SKIP ${out##*$'\n'}"
	else
		[ -n "$out" ] && sed 's/^/# /' <<<"$out"
		echo "not ok $n ${name#test_}"
	fi
done
