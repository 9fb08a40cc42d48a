#!/usr/bin/env bash
# scripts/fuzz.sh [--seconds S] [BUILD_DIR]: run every fuzz_* target in
# BUILD_DIR (default build-fuzz) on its seed corpus, fuzz/corpus/<name>/.
#
# A libFuzzer binary (CIO_FUZZ_LIBFUZZER=ON) fuzzes for S seconds (default
# $CIO_FUZZ_SECONDS or 30) starting from a copy of the seeds; a crash, leak
# or timeout fails the target and its input is kept in
# BUILD_DIR/fuzz-artifacts/ (replay: BUILD_DIR/fuzz_<name> FILE). A
# standalone binary (fuzz/standalone.c) replays the seeds and runs 20,000
# seeded random inputs. The last line is "N passed, N failed".
set -u

seconds=${CIO_FUZZ_SECONDS:-30}
if [ "${1:-}" = --seconds ]; then
    seconds=$2
    shift 2
fi
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: --seconds wants a number, not '$seconds'" >&2; exit 2 ;; esac
build=${1:-build-fuzz}
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

found=0
for bin in "$build"/fuzz_*; do
    [ -x "$bin" ] || continue
    found=1
    name=${bin##*/fuzz_}
    bin=$(readlink -f "$bin")
    seeds=$root/fuzz/corpus/$name
    log=$build/fuzz-$name.log
    if "$bin" -help=1 2>&1 | grep -q libFuzzer; then
        corpus=$work/$name
        mkdir -p "$corpus"
        [ -d "$seeds" ] && cp "$seeds"/* "$corpus"/ 2>/dev/null
        "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
            -artifact_prefix="$artifacts/$name-" -print_final_stats=1 "$corpus" \
            >"$log" 2>&1 </dev/null
        rc=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        what="libFuzzer, $seconds s, ${runs:-?} inputs"
    else
        rc=0
        if [ -d "$seeds" ]; then "$bin" "$seeds" >"$log" 2>&1 </dev/null || rc=$?; fi
        if [ "$rc" = 0 ]; then
            # A new seed each run (printed; the failing input is kept as
            # crash-random-SEED-I in the artifacts directory).
            seed=$(date +%s)
            echo "random inputs, seed $seed" >>"$log"
            (cd "$artifacts" && "$bin" --random 20000 --seed "$seed") >>"$log" 2>&1 </dev/null || rc=$?
        fi
        what="standalone: seeds + 20000 random inputs"
    fi
    if [ "$rc" = 0 ]; then
        echo "PASS fuzz_$name ($what)"
        passed=$((passed + 1))
    else
        echo "FAIL fuzz_$name ($what): exit status $rc; last lines of $log:"
        tail -n 25 "$log" | sed 's/^/    /'
        echo "    failing inputs, if any, are in $artifacts/"
        failed=$((failed + 1))
    fi
done
[ "$found" = 1 ] || echo "fuzz.sh: no fuzz_* binaries in $build"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$found" = 1 ]
