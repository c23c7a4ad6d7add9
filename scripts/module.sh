#!/usr/bin/env bash
# Builds blksnap.ko against $KDIR (default: the cached test kernel).
# With --check, the build must also be free of compiler warnings and pass
# the kernel's clippy (CLIPPY=1); the log goes to stderr on failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ "${1:-}" = --check ]; then
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	# A clean build, so every file is compiled and every warning shows.
	module_make clean >/dev/null
	if ! module_make CLIPPY=1 >"$log" 2>&1; then
		cat "$log" >&2
		die "module build failed"
	fi
	if grep -iE 'warning|error' "$log" >&2; then
		die "module build printed warnings"
	fi
	exit 0
fi
module_make
