#!/usr/bin/env bash
# deploy/fuzz.sh PACKAGE TARGET FUZZTIME: fuzz one target briefly, as make test does.
#
# A run that fails having written no failing input (PACKAGE/testdata/fuzz/TARGET) is Go's
# fuzzing coordinator racing its own -fuzztime deadline ("context deadline exceeded",
# golang/go#75804, fixed in Go 1.27): the target then runs once more. A failing input
# written, or a second failure, fails.
set -euo pipefail
if [ $# -ne 3 ]; then
	echo "usage: $0 PACKAGE TARGET FUZZTIME (e.g. ./internal/jsonrpc FuzzParse 8s)" >&2
	exit 2
fi
pkg=$1 target=$2 fuzztime=$3
dir=$pkg/testdata/fuzz/$target
inputs() { if [ -d "$dir" ]; then find "$dir" -type f | wc -l; else echo 0; fi; }
for try in 1 2; do
	before=$(inputs)
	if ${GO:-go} test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "$pkg"; then
		exit 0
	fi
	if [ "$(inputs)" != "$before" ]; then
		echo "fuzz $target: a failing input was written in $dir" >&2
		exit 1
	fi
	if [ "$try" = 1 ]; then
		echo "fuzz $target: failed without writing a failing input (Go's fuzzing deadline race, golang/go#75804): once more" >&2
	fi
done
echo "fuzz $target: failed twice without a failing input" >&2
exit 1
