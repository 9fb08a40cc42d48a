#!/usr/bin/env bash
# scripts/examples-test.sh [BUILD_DIR]: run every example the way a reader
# would and check that it did its job (exit status and the line that shows
# it). Loopback only. Used by the "examples" stage of scripts/check.sh.
#
# Each example gets a time limit; one that is not built (examples/tls_*.c
# without OpenSSL) is reported and skipped. The last line is
# "N passed, N failed".
set -u

build=${1:-build}
passed=0
failed=0
skipped=0
out=$(mktemp -d)
trap 'rm -rf "$out"; [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null' EXIT

# check NAME PATTERN CMD...: run CMD (20 s limit); pass when it exits 0 and
# its output matches the extended regex PATTERN.
check() {
    check_status "$1" 0 "$2" "${@:3}"
}

# check_status NAME STATUS PATTERN CMD...: the same, for exit status STATUS.
check_status() {
    local name=$1 want=$2 pattern=$3
    shift 3
    if [ ! -x "$1" ]; then
        echo "SKIP $name: $1 not built"
        skipped=$((skipped + 1))
        return
    fi
    local rc=0
    timeout -k 5 20 "$@" >"$out/$name" 2>&1 </dev/null || rc=$?
    if [ "$rc" = "$want" ] && grep -qE "$pattern" "$out/$name"; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name: exit status $rc (wanted $want), wanted output matching /$pattern/; it printed:"
        sed 's/^/    /' "$out/$name" | tail -n 20
        failed=$((failed + 1))
    fi
}

check demo 'failed: task .fetch echo.example.: Input/output error' "$build/example_demo"
check fanout 'children running afterwards: 0 \(peak 10 of 10' "$build/example_fanout" --virtual
check pipeline 'done: 12 lines, 81 words; group: ok; left in queues: 0 \+ 0' \
    "$build/example_pipeline" --virtual
check subprocess_pipeline '^99996$' "$build/example_subprocess_pipeline"
check tls_client 'verified, echoed' "$build/example_tls_client"
# The test toolkit's examples are tests themselves (cio/testing.h).
check testing_retry '^3 passed, 0 failed$' "$build/example_testing_retry"
check testing_plain_main '^all 3 tests passed$' "$build/example_testing_plain_main"
check learn_1_blocking 'one at a time: 8 answers' "$build/example_learn_1_blocking"
check learn_2_threads 'a thread per question: 8 answers' "$build/example_learn_2_threads"
check learn_3_event_loop 'an event loop: 8 answers' "$build/example_learn_3_event_loop"
check learn_4_tasks 'tasks on one thread: 8 answers' "$build/example_learn_4_tasks"
# cio/testing.h: a retrying client against a scripted flaky peer on the
# virtual clock, and an ordering bug found with seeds (its own checks
# decide the exit status; the last line says both tests ran).
check testing_flaky_peer '^seeds: the fixed version passes 100 seeds$' \
    "$build/example_testing_flaky_peer"

# debug_planted: one run, each planted bug's report checked (debug mode's
# reports go to stderr, which check captures with stdout).
if [ -x "$build/example_debug_planted" ]; then
    rc=0
    timeout -k 5 20 "$build/example_debug_planted" >"$out/debug_planted" 2>&1 </dev/null || rc=$?
    missing=""
    for pattern in \
        "^cio: slow step: task 'resizer' #2 ran [0-9.]+ ms without suspending \(threshold 100\.0 ms\), from .*debug_planted\.c:[0-9]+ in resizer\(\) to .*debug_planted\.c:[0-9]+ in resizer\(\)" \
        "^cio: at close: task 'waiter' #3 still pending \(waiting at .*debug_planted\.c:[0-9]+ in waiter\(\)" \
        "^cio: at close: stream fd [0-9]+ still open, created at .* by task 'fetcher' #4\$" \
        "^cio: task 'fetcher' failed with -5 \(Input/output error\) and nobody read its status" \
        "^exit status 0\$"; do
        grep -qE "$pattern" "$out/debug_planted" || missing="$missing
    /$pattern/"
    done
    if [ "$rc" = 0 ] && [ -z "$missing" ]; then
        echo "PASS debug_planted"
        passed=$((passed + 1))
    else
        echo "FAIL debug_planted: exit status $rc (wanted 0), lines missing:$missing"
        echo "  it printed:"
        sed 's/^/    /' "$out/debug_planted" | tail -n 20
        failed=$((failed + 1))
    fi
else
    echo "SKIP debug_planted: not built"
    skipped=$((skipped + 1))
fi

# The echo server and the TCP client, together: the server serves one
# connection and exits by itself.
if [ -x "$build/example_echo_server" ] && [ -x "$build/example_tcp_client" ]; then
    timeout -k 5 20 "$build/example_echo_server" --host 127.0.0.1 --port 0 --max-conns 1 \
        >"$out/echo_server" 2>&1 </dev/null &
    server_pid=$!
    port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on port \([0-9][0-9]*\).*/\1/p' "$out/echo_server")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "FAIL echo_server: no 'listening on port N' line; it printed:"
        sed 's/^/    /' "$out/echo_server"
        failed=$((failed + 1))
        kill "$server_pid" 2>/dev/null
    else
        check tcp_client '^hello from cio$' "$build/example_tcp_client" 127.0.0.1 "$port"
        rc=0
        wait "$server_pid" || rc=$?
        if [ "$rc" = 0 ]; then
            echo "PASS echo_server (served one connection, then exited)"
            passed=$((passed + 1))
        else
            echo "FAIL echo_server: exit status $rc; it printed:"
            sed 's/^/    /' "$out/echo_server"
            failed=$((failed + 1))
        fi
    fi
    server_pid=""
else
    echo "SKIP echo_server + tcp_client: not built"
    skipped=$((skipped + 2))
fi

# http_get against a local HTTP server (python3 -m http.server on a free
# loopback port), then a refused URL: the error line names the URL, and the
# exit status is 1.
if [ -x "$build/example_http_get" ] && command -v python3 >/dev/null; then
    mkdir -p "$out/www"
    printf 'hello, http\n' >"$out/www/hello.txt"
    timeout -k 5 30 python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$out/www" \
        >"$out/http_server" 2>&1 </dev/null &
    server_pid=$!
    port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*Serving HTTP on 127.0.0.1 port \([0-9][0-9]*\).*/\1/p' "$out/http_server")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "FAIL http_get: the python3 HTTP server did not start; it printed:"
        sed 's/^/    /' "$out/http_server"
        failed=$((failed + 1))
    else
        url="http://127.0.0.1:$port/hello.txt"
        check http_get "^${url//./\\.}: 200, 12 bytes, [0-9]+ ms\$" "$build/example_http_get" "$url"
    fi
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=""
    # (port 1 on loopback: nothing listens there)
    check_status http_get_refused 1 '^http://127\.0\.0\.1:1/: HTTP: could not connect .*\(.*\)$' \
        "$build/example_http_get" http://127.0.0.1:1/
else
    echo "SKIP http_get: example_http_get not built or no python3 for its server"
    skipped=$((skipped + 2))
fi

# news --demo: six sources from the tool's own server on 127.0.0.1, each
# answering after 2 s, fetched at once: the summary line, then an item of
# each source in the output (the HTML page's discovered feed, the broken
# feed recovered, the slow one trickled in).
check news_demo 'fetched 6 sources in [0-9]+\.[0-9] s \(one at a time: 1[2-9]\.[0-9] s\)' \
    "$build/news" --demo
if [ -x "$build/news" ] && [ -f "$out/news_demo" ]; then
    missing=""
    for want in 'valve radio' 'Geminids warm-up' 'Winter dal' 'Tide Tables #212' \
        'late on Friday' 'Reel 311'; do
        grep -qF "$want" "$out/news_demo" || missing="$missing '$want'"
    done
    if [ -z "$missing" ]; then
        echo "PASS news_demo_items"
        passed=$((passed + 1))
    else
        echo "FAIL news_demo_items: not in the output of news --demo:$missing; it printed:"
        sed 's/^/    /' "$out/news_demo" | tail -n 40
        failed=$((failed + 1))
    fi
fi

[ "$skipped" = 0 ] || echo "$skipped skipped (not built here)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
