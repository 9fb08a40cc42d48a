#!/usr/bin/env bash
# scripts/check.sh [STAGE...]: what `make check` and CI run.
#
# Stages, in order (default: every one this machine can run):
#   plain     build/           default compiler, RelWithDebInfo; cio_tests
#   seeds     build/           plain build's cio_tests under seeded scheduling,
#                              once per seed in CIO_CHECK_SEEDS (default
#                              "1 2 3"; "random" picks one): the tasks ready
#                              in the same turn run in an order drawn from
#                              the seed; a failure prints the seed that
#                              replays it (CIO_SEED=N build/cio_tests NAME)
#   asan      build-asan/      clang (else gcc), Debug, ASan + UBSan
#   ucontext  build-ucontext/  -DCIO_CONTEXT=ucontext (portable switch)
#   aarch64   build-aarch64/   cross build, cio_tests under qemu-aarch64
#                              (needs gcc-aarch64-linux-gnu, qemu-user)
#   valgrind  build/           plain build's cio_tests under valgrind, forked
#                              children included (needs valgrind)
#   tsan      build-tsan/      ThreadSanitizer; only tests whose names
#                              contain "thread" or "executor"
#   install   build/           install into a temporary prefix and build a
#                              consumer with pkg-config and find_package
#   examples  build/           run every example and check what it printed
#                              (scripts/examples-test.sh)
#   fuzz      build-fuzz/      clang libFuzzer + ASan/UBSan: every fuzz/*.c
#                              target for CIO_FUZZ_SECONDS (default 30) from
#                              its seeds (scripts/fuzz.sh); without clang's
#                              libFuzzer, the standalone driver's replay and
#                              random inputs on the plain build
#
# Pick stages with arguments or CIO_CHECK_STAGES=plain,asan. A stage that
# was asked for by name (or any stage, with CI=true) and cannot run on this
# machine counts as failed; otherwise it is skipped with the reason.
# A stage that fails to build counts as 1 failed test; a runner that dies
# without its summary line, or exits non-zero with no failed test (a
# sanitizer or valgrind error outside the tests), adds 1 failed.
#
# Environment: CIO_CHECK_JOBS (build parallelism, default 2),
# CIO_CHECK_STAGE_TIMEOUT (seconds per test run, default 1200).
#
# The last line is the total, "N passed, N failed"; the exit status is 1
# when anything failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
# Run from `make check`: the builds below are not sub-makes of that make.
unset MAKEFLAGS MFLAGS MAKELEVEL
root=$PWD
jobs=${CIO_CHECK_JOBS:-2}
stage_timeout=${CIO_CHECK_STAGE_TIMEOUT:-1200}
all_stages=(plain seeds asan ucontext aarch64 valgrind tsan install examples fuzz)

ci=0
case "${CI:-}" in true|1|yes) ci=1 ;; esac

# --- which stages ------------------------------------------------------------
explicit=0
if [ $# -gt 0 ]; then
    IFS=', ' read -r -a stages <<<"$*"
    explicit=1
elif [ -n "${CIO_CHECK_STAGES:-}" ]; then
    IFS=', ' read -r -a stages <<<"$CIO_CHECK_STAGES"
    explicit=1
else
    stages=("${all_stages[@]}")
fi
for s in "${stages[@]}"; do
    case " ${all_stages[*]} " in
        *" $s "*) ;;
        *) echo "check: unknown stage '$s' (stages: ${all_stages[*]})" >&2
           echo "0 passed, 1 failed"
           exit 2 ;;
    esac
done

total_passed=0
total_failed=0
summary=()
t_start=$SECONDS

# record STAGE PASSED FAILED NOTE
record() {
    total_passed=$((total_passed + $2))
    total_failed=$((total_failed + $3))
    summary+=("$(printf '  %-9s %4d passed, %d failed  %s' "$1" "$2" "$3" "$4")")
}

header() {
    echo
    echo "==== [$1] $2"
}

# --- dependencies ------------------------------------------------------------
header deps "scripts/deps.sh"
if ! bash scripts/deps.sh </dev/null; then
    echo "check: scripts/deps.sh failed: missing build dependencies (see above)"
    echo "0 passed, 1 failed"
    exit 1
fi

# --- helpers -----------------------------------------------------------------
# configure_build DIR COMPILER [CMAKE ARGS...]: configure and build DIR with
# -j$jobs, output to DIR/check-build.log (its tail is shown on failure).
# COMPILER "" keeps CMake's default; a different compiler than the one DIR
# was configured with starts DIR afresh.
configure_build() {
    local dir=$1 cc=$2
    shift 2
    local log=$dir/check-build.log
    if [ -n "$cc" ] && [ -f "$dir/CMakeCache.txt" ]; then
        local cached want
        cached=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
        want=$(command -v "$cc" || echo "$cc")
        if [ "$(readlink -f "$cached" 2>/dev/null)" != "$(readlink -f "$want" 2>/dev/null)" ]; then
            echo "check: $dir was configured with $cached, not $cc: starting it afresh"
            rm -rf "$dir"
        fi
    fi
    local ccarg=()
    [ -n "$cc" ] && ccarg=(-DCMAKE_C_COMPILER="$cc")
    local t0=$SECONDS
    mkdir -p "$dir"
    if cmake -S "$root" -B "$dir" "${ccarg[@]}" "$@" >"$log" 2>&1 &&
       cmake --build "$dir" -j"$jobs" >>"$log" 2>&1; then
        echo "built $dir in $((SECONDS - t0)) s ($(sed -n 's/^-- cio [^:]*: //p' "$log" | tail -n1))"
        return 0
    fi
    echo "check: BUILD FAILED in $dir; last lines of $log:"
    tail -n 40 "$log" | sed 's/^/    /'
    return 1
}

# run_tests STAGE LOG CMD...: run a test runner (stdout and stderr to the
# terminal and LOG), then record the stage from its last summary line.
# FILTER, when set, is a grep -v -E pattern for lines kept out of the
# terminal (they stay in LOG).
run_tests() {
    local stage=$1 log=$2
    shift 2
    local t0=$SECONDS rc
    mkdir -p "$(dirname "$log")"
    if [ -n "${FILTER:-}" ]; then
        timeout -k 10 "$stage_timeout" "$@" </dev/null 2>&1 | tee "$log" |
            grep --line-buffered -v -E "$FILTER"
        rc=${PIPESTATUS[0]}
    else
        timeout -k 10 "$stage_timeout" "$@" </dev/null 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    fi
    local secs=$((SECONDS - t0)) line p f note=""
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)
    if [ -z "$line" ]; then
        p=0 f=1
        if [ "$rc" = 124 ]; then
            note="timed out after ${stage_timeout} s"
        else
            note="runner ended without a summary (exit status $rc)"
        fi
        echo "check: $stage: $note"
    else
        p=${line%% passed*}
        f=${line#*passed, }
        f=${f%% failed*}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
            f=1
            note="runner exit status $rc with no failed test"
            echo "check: $stage: $note (see $log)"
        fi
    fi
    local skipped
    skipped=$(sed -n 's/^\([0-9][0-9]*\) skipped.*/\1/p' "$log" | tail -n1)
    [ -n "$skipped" ] && note="${note:+$note; }$skipped skipped"
    record "$stage" "$p" "$f" "(${secs} s run${note:+; $note})"
}

skip_or_fail() {   # skip_or_fail STAGE REASON
    if [ "$explicit" = 1 ] || [ "$ci" = 1 ]; then
        echo "check: $1 cannot run: $2"
        record "$1" 0 1 "(cannot run: $2)"
    else
        echo "check: $1 skipped: $2"
        summary+=("$(printf '  %-9s skipped: %s' "$1" "$2")")
    fi
}

# plain build, shared by plain, valgrind and install: 0 not yet, 1 ok, 2 failed
plain_state=0
plain_build() {
    if [ "$plain_state" = 0 ]; then
        if configure_build build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
               -DCIO_SANITIZE= -DCIO_CONTEXT=asm -DCIO_BUILD_TESTS=ON; then
            plain_state=1
        else
            plain_state=2
        fi
    fi
    [ "$plain_state" = 1 ]
}

sanitizer_cc() {   # the compiler for the ASan+UBSan stage
    if command -v clang >/dev/null 2>&1 &&
       echo 'int main(void){return 0;}' |
       clang -fsanitize=address,undefined -x c - -o /dev/null >/dev/null 2>&1; then
        echo clang
    else
        echo gcc
    fi
}

# --- stages --------------------------------------------------------------------
stage_plain() {
    header plain "default compiler, RelWithDebInfo, build/"
    plain_build || { record plain 0 1 "(build failed)"; return; }
    run_tests plain build/check-plain.log build/cio_tests
}

# Left out of the seeds stage: tests where the order of tasks is not what
# they exercise and that cost seconds each (5 s of the ~35 s a run takes):
# the 1 GiB body streamed through libcurl (memory bound) and tcpcheck's
# terminal output (a child process's timing).
seeds_excluded=(-x http_one_gib_body -x tcpcheck_progress_on_a_terminal)

stage_seeds() {
    header seeds "build/cio_tests under seeded scheduling (seeds: ${CIO_CHECK_SEEDS:-1 2 3})"
    plain_build || { record seeds 0 1 "(plain build failed)"; return; }
    local seed
    for seed in ${CIO_CHECK_SEEDS:-1 2 3}; do
        run_tests "seed $seed" "build/check-seed-$seed.log" \
            build/cio_tests --seed "$seed" "${seeds_excluded[@]}"
    done
}

stage_asan() {
    local cc
    cc=$(sanitizer_cc)
    header asan "$cc, Debug, ASan+UBSan, build-asan/"
    configure_build build-asan "$cc" -DCMAKE_BUILD_TYPE=Debug \
        -DCIO_SANITIZE=address -DCIO_BUILD_BENCH=OFF -DCIO_BUILD_EXAMPLES=OFF ||
        { record asan 0 1 "(build failed)"; return; }
    ASAN_OPTIONS=detect_leaks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_tests asan build-asan/check.log build-asan/cio_tests
}

stage_ucontext() {
    header ucontext "default compiler, RelWithDebInfo, CIO_CONTEXT=ucontext, build-ucontext/"
    configure_build build-ucontext "" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCIO_CONTEXT=ucontext -DCIO_BUILD_BENCH=OFF -DCIO_BUILD_EXAMPLES=OFF ||
        { record ucontext 0 1 "(build failed)"; return; }
    run_tests ucontext build-ucontext/check.log build-ucontext/cio_tests
}

aarch64_missing() {   # prints what the aarch64 stage lacks, if anything
    local m=()
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || m+=(aarch64-linux-gnu-gcc)
    [ -e /usr/aarch64-linux-gnu/include/stdio.h ] || m+=(/usr/aarch64-linux-gnu/include/stdio.h)
    command -v qemu-aarch64 >/dev/null 2>&1 || m+=(qemu-aarch64)
    echo "${m[*]}"
}

stage_aarch64() {
    local missing
    missing=$(aarch64_missing)
    if [ -n "$missing" ]; then
        skip_or_fail aarch64 "missing $missing (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
        return
    fi
    header aarch64 "aarch64-linux-gnu-gcc, RelWithDebInfo, build-aarch64/, under qemu-aarch64"
    configure_build build-aarch64 "" \
        -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCIO_BUILD_BENCH=OFF \
        -DCIO_BUILD_EXAMPLES=OFF ||
        { record aarch64 0 1 "(build failed)"; return; }
    CIO_TEST_SLOW=1 run_tests aarch64 build-aarch64/check.log \
        qemu-aarch64 -L /usr/aarch64-linux-gnu build-aarch64/cio_tests
}

stage_valgrind() {
    if ! command -v valgrind >/dev/null 2>&1; then
        skip_or_fail valgrind "valgrind not installed (apt-get install valgrind)"
        return
    fi
    header valgrind "build/cio_tests under valgrind (memcheck, children traced)"
    plain_build || { record valgrind 0 1 "(plain build failed)"; return; }
    # valgrind's own notices ("--PID-- WARNING: unhandled syscall") go to
    # the log only; its error reports ("==PID==") are shown.
    FILTER='^--[0-9]+-- ' CIO_TEST_SLOW=1 run_tests valgrind build/check-valgrind.log \
        valgrind --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite --trace-children=yes --quiet \
        build/cio_tests
    local notices
    notices=$(grep -cE '^--[0-9]+-- ' build/check-valgrind.log)
    [ "$notices" -gt 0 ] &&
        echo "check: valgrind: $notices notice lines in build/check-valgrind.log, e.g.: $(grep -m1 -E '^--[0-9]+-- ' build/check-valgrind.log)"
    return 0
}

stage_tsan() {
    header tsan "default compiler, RelWithDebInfo, ThreadSanitizer, build-tsan/ (tests: thread, executor)"
    configure_build build-tsan "" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCIO_SANITIZE=thread -DCIO_BUILD_BENCH=OFF -DCIO_BUILD_EXAMPLES=OFF ||
        { record tsan 0 1 "(build failed)"; return; }
    TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" \
        run_tests tsan build-tsan/check.log build-tsan/cio_tests thread executor
}

stage_install() {
    header install "install build/ into a temporary prefix; pkg-config and find_package consumers"
    plain_build || { record install 0 1 "(plain build failed)"; return; }
    run_tests install build/check-install.log bash scripts/install-test.sh build
}

stage_examples() {
    header examples "run every example in build/ and check its output"
    plain_build || { record examples 0 1 "(plain build failed)"; return; }
    run_tests examples build/check-examples.log bash scripts/examples-test.sh build
}

have_libfuzzer() {
    command -v clang >/dev/null 2>&1 &&
        printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' |
        clang -fsanitize=fuzzer,address -x c - -o /dev/null >/dev/null 2>&1
}

stage_fuzz() {
    if have_libfuzzer; then
        header fuzz "clang, libFuzzer + ASan/UBSan, build-fuzz/, ${CIO_FUZZ_SECONDS:-30} s per target"
        configure_build build-fuzz clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DCIO_SANITIZE=address -DCIO_FUZZ_LIBFUZZER=ON -DCIO_BUILD_TESTS=OFF \
            -DCIO_BUILD_BENCH=OFF -DCIO_BUILD_EXAMPLES=OFF ||
            { record fuzz 0 1 "(build failed)"; return; }
        run_tests fuzz build-fuzz/check.log bash scripts/fuzz.sh build-fuzz
    else
        header fuzz "no libFuzzer (clang): the standalone fuzz driver on build/"
        plain_build || { record fuzz 0 1 "(plain build failed)"; return; }
        run_tests fuzz build/check-fuzz.log bash scripts/fuzz.sh build
    fi
}

for s in "${stages[@]}"; do
    "stage_$s"
done

echo
echo "==== summary ($((SECONDS - t_start)) s)"
printf '%s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
