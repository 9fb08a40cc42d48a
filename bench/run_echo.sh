#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions called indirectly (server_$name, traps)
# bench/run_echo.sh: TCP echo on loopback, every server side by side.
#
#   bench/run_echo.sh [--quick] [--duration S] [--warmup S] [--connections N]
#                     [--size BYTES] [--rate N] [--servers "cio cio_streams ..."]
#                     [--build DIR] [--server-cpu N] [--load-cpu N] [--verbose]
#
# For each server: start it pinned (taskset) to --server-cpu (default 0),
# run bench_loadgen pinned to --load-cpu (default 1) against it, 100
# connections x 64-byte messages, 1 s of warm-up then --duration seconds
# (default 5; --quick: 1), stop the server with SIGINT, and print one line:
# requests/s, p50/p99 latency and the server's CPU time per request (read
# by bench_loadgen from /proc/PID over the measured window only).
#
# With two cores both processes run flat out, so requests/s and the
# latencies say as much about the load generator as about the server; CPU
# us per request is the figure that compares servers. It depends on the
# load, so compare servers within one run; --rate N offers every server
# the same N requests/s instead of "as fast as it goes" (bench/README.md).
# A line is flagged when other work or the hypervisor took more than a
# little CPU during its window: rerun then.
#
# It builds nothing: bench_loadgen and the servers must be in --build
# (default: build/, or $BUILD_DIR; the other runtimes' servers in its
# peers/, built by bench/peers/build.sh). A server that is not there is
# listed as "not built" and skipped. Exit status: 0 if every server that ran was
# measured without errors, 1 otherwise, 2 for bad usage.
#
# Adding a server (another runtime): write one function
# server_<name> that starts it listening on 127.0.0.1 with `start_server`
# (below) and returns 3 if its binary is missing, add <name> to
# ALL_SERVERS and its label to label_of. A server must echo every byte on
# every connection, print its port on its first stdout line ("port N", or
# just N), and exit on SIGINT.
set -u

ALL_SERVERS="floor cio cio_streams libuv go tokio asyncio uvloop"
# The runtimes cio's target is set against (DESIGN.md); asyncio is shown
# for reference only.
TARGET_PEERS="libuv go tokio uvloop"

label_of() {
    case "$1" in
    floor) echo "floor: bare epoll loop, no runtime" ;;
    cio) echo "cio sock_* (cio_recv/cio_send)" ;;
    cio_streams) echo "cio streams (read/write/drain)" ;;
    libuv) echo "libuv $(peer_version libuv)" ;;
    go) echo "Go $(peer_version go), GOMAXPROCS=1" ;;
    tokio) echo "Tokio $(peer_version tokio) current_thread" ;;
    asyncio) echo "asyncio Protocol $(peer_version asyncio)" ;;
    uvloop) echo "uvloop $(peer_version uvloop) Protocol" ;;
    *) echo "$1" ;;
    esac
}

# ---- options ----------------------------------------------------------------
here=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD_DIR:-$here/../build}
DURATION=5
WARMUP=1
CONNECTIONS=100
SIZE=64
RATE=0
SERVERS=$ALL_SERVERS
SERVER_CPU=0
LOAD_CPU=1
VERBOSE=0

die_usage() {
    echo "run_echo.sh: $*" >&2
    sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

need_value() { [ $# -ge 2 ] || die_usage "$1 needs a value"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) DURATION=1 ;;
    --duration) need_value "$@"; DURATION=$2; shift ;;
    --warmup) need_value "$@"; WARMUP=$2; shift ;;
    --connections) need_value "$@"; CONNECTIONS=$2; shift ;;
    --size) need_value "$@"; SIZE=$2; shift ;;
    --rate) need_value "$@"; RATE=$2; shift ;;
    --servers) need_value "$@"; SERVERS=$2; shift ;;
    --build) need_value "$@"; BUILD=$2; shift ;;
    --server-cpu) need_value "$@"; SERVER_CPU=$2; shift ;;
    --load-cpu) need_value "$@"; LOAD_CPU=$2; shift ;;
    --verbose | -v) VERBOSE=1 ;;
    -h | --help) sed -n '3,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
    esac
    shift
done
for v in DURATION WARMUP CONNECTIONS SIZE RATE SERVER_CPU LOAD_CPU; do
    case "${!v}" in
    '' | *[!0-9]*) die_usage "$v must be a whole number, not '${!v}'" ;;
    esac
done
for s in $SERVERS; do
    case " $ALL_SERVERS " in
    *" $s "*) ;;
    *) die_usage "unknown server '$s' (known: $ALL_SERVERS)" ;;
    esac
done
LOADGEN=$BUILD/bench_loadgen
if [ ! -x "$LOADGEN" ]; then
    echo "run_echo.sh: $LOADGEN not found: build first (cmake -S . -B build && cmake --build build -j2)" >&2
    exit 1
fi

# ---- pinning ------------------------------------------------------------------
PIN_NOTE=""
if ! command -v taskset >/dev/null 2>&1; then
    PIN_NOTE="not pinned: taskset not found"
elif ! taskset -c "$SERVER_CPU" true 2>/dev/null || ! taskset -c "$LOAD_CPU" true 2>/dev/null; then
    PIN_NOTE="not pinned: CPU $SERVER_CPU or $LOAD_CPU is not available here"
elif [ "$SERVER_CPU" = "$LOAD_CPU" ]; then
    PIN_NOTE="not pinned: --server-cpu and --load-cpu are the same CPU"
fi
pin() { # pin CPU cmd...
    local cpu=$1
    shift
    if [ -z "$PIN_NOTE" ]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

# Busy share (%) of one CPU over 0.3 s, from /proc/stat (empty if unknown).
cpu_busy() {
    local a b
    a=$(grep "^cpu$1 " /proc/stat 2>/dev/null) || return 0
    sleep 0.3
    b=$(grep "^cpu$1 " /proc/stat 2>/dev/null) || return 0
    awk -v a="$a" -v b="$b" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ");
        for (i = 2; i <= n; i++) { d = y[i] - x[i]; tot += d; if (i == 5 || i == 6) idle += d }
        if (tot > 0) printf "%d", 100 * (tot - idle) / tot }'
}

# ---- servers --------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/run_echo.XXXXXX") || exit 1
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server cmd...: run cmd pinned to SERVER_CPU with stdout in
# $TMP/server.out, wait (10 s at most) for its port on the first line, and
# set SERVER_PID and SERVER_PORT. Returns 1 if the server did not come up.
start_server() {
    : >"$TMP/server.out"
    if [ -z "$PIN_NOTE" ]; then set -- taskset -c "$SERVER_CPU" "$@"; fi
    # A simple command, so that $! is the server itself (taskset execs
    # it); with job control on (set -m), so that the server is not started
    # with SIGINT ignored, as a non-interactive shell's background jobs are.
    set -m
    "$@" >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    set +m
    SERVER_PORT=""
    local i line
    for ((i = 0; i < 200; i++)); do
        line=$(head -n 1 "$TMP/server.out")
        case "$line" in
        "port "[0-9]*) SERVER_PORT=${line#port } ;;
        [0-9]*) SERVER_PORT=$line ;;
        esac
        case "$SERVER_PORT" in
        '' | *[!0-9]*) SERVER_PORT="" ;;
        *) return 0 ;;
        esac
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "run_echo.sh: the server ($*) printed no port:" >&2
    sed 's/^/    /' "$TMP/server.err" >&2
    stop_server
    return 1
}

# SIGINT, then 5 s to exit, then SIGKILL.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -INT "$SERVER_PID" 2>/dev/null
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "run_echo.sh: the server did not exit on SIGINT within 5 s: killed" >&2
        kill -KILL "$SERVER_PID" 2>/dev/null
    fi
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

# cio's bench_echo (bench/echo.c), in one of its modes: sock, stream, or
# floor (a bare level-triggered epoll loop, one read and one send per event,
# no runtime: the least an epoll server can do, measured as the reference).
cio_echo() { # cio_echo sock|stream|floor
    local bin=$BUILD/bench_echo
    [ -x "$bin" ] || return 3
    start_server "$bin" --serve 127.0.0.1:0 --mode "$1" --max-seconds 3600
}
server_floor() { cio_echo floor; }
server_cio() { cio_echo sock; }
server_cio_streams() { cio_echo stream; }

# The other runtimes' servers (bench/peers/, built into $BUILD/peers by
# bench/peers/build.sh), each on one thread/core: libuv's one loop, Go with
# GOMAXPROCS=1, Tokio's current_thread runtime, asyncio's and uvloop's one
# loop. They take --port and --max-seconds alike.
peer_echo() { # peer_echo NAME [ENV=VALUE...]
    local bin=$BUILD/peers/echo_$1
    shift
    [ -x "$bin" ] || return 3
    start_server env "$@" "$bin" --port 0 --max-seconds 3600
}
server_libuv() { peer_echo libuv; }
server_go() { peer_echo go GOMAXPROCS=1; }
server_tokio() { peer_echo tokio; }
server_asyncio() { peer_echo asyncio; }
server_uvloop() { peer_echo uvloop; }

# The version of a peer's runtime, from the Debian package it was built
# with (empty when unknown).
peer_version() {
    local pkg
    case "$1" in
    libuv) pkg=libuv1 ;;
    go) pkg=golang-go ;;
    tokio) pkg=librust-tokio-dev ;;
    asyncio) pkg=python3 ;;
    uvloop) pkg=python3-uvloop ;;
    *) return 0 ;;
    esac
    dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null | sed -e 's/^[0-9]*://' -e 's/[-+~].*//'
}

# ---- the run ------------------------------------------------------------------------
field() { # field KEY LINE: the value of KEY=value in LINE
    local kv
    for kv in $2; do
        case "$kv" in "$1="*) echo "${kv#*=}"; return ;; esac
    done
}

if [ "$RATE" = 0 ]; then pace="closed loop, as fast as it goes"; else pace="paced at $RATE req/s"; fi
echo "TCP echo on 127.0.0.1: $CONNECTIONS connections x $SIZE-byte messages ($pace)," \
    "${WARMUP} s warm-up + ${DURATION} s measured per server"
if [ -n "$PIN_NOTE" ]; then
    echo "($PIN_NOTE)"
else
    echo "server pinned to CPU $SERVER_CPU, bench_loadgen to CPU $LOAD_CPU ($(nproc) CPUs)"
    for c in "$SERVER_CPU" "$LOAD_CPU"; do
        busy=$(cpu_busy "$c")
        if [ -n "$busy" ] && [ "$busy" -gt 10 ]; then
            echo "warning: CPU $c is already ${busy}% busy: other work is running, the figures will be noisy"
        fi
    done
fi
printf '%-32s %9s %8s %8s %12s %12s %6s\n' server "req/s" "p50 us" "p99 us" \
    "srv CPU us/r" "gen CPU us/r" errors

status=0
results=""
for s in $SERVERS; do
    label=$(label_of "$s")
    "server_$s"
    rc=$?
    if [ $rc = 3 ]; then
        case "$s" in
        floor | cio*) hint="" ;;
        *) hint=": bench/peers/build.sh builds it" ;;
        esac
        printf '%-32s not built (skipped%s)\n' "$label" "$hint"
        continue
    elif [ $rc != 0 ]; then
        printf '%-32s FAILED to start\n' "$label"
        status=1
        continue
    fi
    line=$(pin "$LOAD_CPU" "$LOADGEN" --host 127.0.0.1 --port "$SERVER_PORT" \
        --connections "$CONNECTIONS" --size "$SIZE" --duration "$DURATION" \
        --warmup "$WARMUP" --rate "$RATE" --server-pid "$SERVER_PID" 2>"$TMP/loadgen.err")
    lrc=$?
    stop_server
    if [ "$VERBOSE" = 1 ]; then
        echo "  loadgen: $line"
        sed 's/^/  server: /' "$TMP/server.out" "$TMP/server.err"
    fi
    if [ -z "$line" ]; then
        printf '%-32s FAILED: %s\n' "$label" "$(head -n 1 "$TMP/loadgen.err")"
        status=1
        continue
    fi
    [ $lrc = 0 ] || status=1
    rps=$(field rps "$line")
    p50=$(field p50_us "$line")
    p99=$(field p99_us "$line")
    cpu=$(field server_cpu_us_per_req "$line")
    gen=$(field loadgen_cpu_us_per_req "$line")
    errors=$(field errors "$line")
    case "$cpu" in -*) cpu="n/a" ;; esac
    printf '%-32s %9s %8s %8s %12s %12s %6s\n' "$label" "$rps" "$p50" "$p99" "$cpu" "$gen" "$errors"
    others=$(field others_cpu_pct "$line")
    steal=$(field steal_pct "$line")
    if awk -v o="$others" -v s="$steal" 'BEGIN { exit !(o > 10 || s > 5) }'; then
        echo "  ^ disturbed: other work used ${others}% of a CPU, the hypervisor stole ${steal}%: rerun"
    fi
    results="$results$s $cpu
"
done

# The target (DESIGN.md): cio's CPU per request <= 0.8x the best of the
# other runtimes measured in the same run. The floor is not a runtime: it
# is shown as the least any epoll server can spend.
echo "$results" | awk -v peers=" $TARGET_PEERS " '
    $2 !~ /^[0-9.]+$/ { next }
    $1 == "floor" { floor = $2; next }
    $1 ~ /^cio/ { if (cio == "" || $2 < cio) { cio = $2; which = $1 } next }
    index(peers, " " $1 " ") { if (best == "" || $2 < best) { best = $2; who = $1 } }
    END {
        if (cio == "") exit
        if (floor != "")
            printf "cio (%s) %.2f us/req = %.2fx the bare epoll floor (%.2f us/req)\n", which, cio, cio / floor, floor
        if (best == "")
            printf "target: cio CPU/request <= 0.8x the best of libuv, Go, Tokio, uvloop: none of them ran\n"
        else
            printf "target: cio %.2f us/req vs best other (%s) %.2f us/req = %.2fx (target <= 0.80x): %s\n",
                cio, who, best, cio / best, cio / best <= 0.8 ? "PASS" : "MISS"
    }'
exit $status
