#!/usr/bin/env bash
# bench/http.sh [BUILD_DIR] [N] [CAP]: N requests (10000), CAP in flight
# (100), keep-alive, to a local server (build/bench_http --serve: the tests'
# HTTP/1.1 server on cio, in its own process), by three clients in the same
# run: libcio_http (build/bench_http --client), curl --parallel
# --parallel-max CAP, and Python aiohttp when it is installed
# (python3-aiohttp). Prints requests/s and CPU microseconds per request
# (user + system of the client process only). A benchmark: always exits 0.
set -u
build=${1:-build}
n=${2:-10000}
cap=${3:-100}
tmp=$(mktemp -d)
trap 'kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT

"$build/bench_http" --serve >"$tmp/port" &
srv=$!
for _ in $(seq 100); do
    port=$(sed -n 's/^port \([0-9]*\)/\1/p' "$tmp/port")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "${port:-}" ] || { echo "http.sh: the server did not start"; exit 0; }
url="http://127.0.0.1:$port/ok"
echo "server: $url; $n requests, $cap in flight, keep-alive"

# (bash's `time` reports the children's user and system CPU seconds)
cpu_of() {   # cpu_of LABEL CMD...: run CMD, print req/s and us CPU per request
    local label=$1
    shift
    local TIMEFORMAT='%R %U %S'
    local t
    t=$( { time "$@" >"$tmp/out" 2>&1; } 2>&1 )
    read -r real user sys <<<"$t"
    awk -v l="$label" -v n="$n" -v r="$real" -v u="$user" -v s="$sys" \
        'BEGIN { printf "%-16s %8.0f req/s  %7.1f us CPU per request\n", l, n / r, (u + s) * 1e6 / n }'
}

cpu_of cio_http "$build/bench_http" --client "$url" "$n" "$cap"
grep -qE " [1-9][0-9]* failed" "$tmp/out" && sed 's/^/    /' "$tmp/out"

if command -v curl >/dev/null; then
    for _ in $(seq "$n"); do echo "url = \"$url\""; echo "output = \"/dev/null\""; done >"$tmp/curl.cfg"
    cpu_of "curl --parallel" curl -s --parallel --parallel-max "$cap" --parallel-immediate -K "$tmp/curl.cfg"
else
    echo "curl: not installed, skipped"
fi

py=""
for p in python3 /usr/bin/python3; do   # (Debian's python3-aiohttp is /usr/bin's)
    if command -v "$p" >/dev/null && "$p" -c 'import aiohttp' 2>/dev/null; then
        py=$p
        break
    fi
done
if [ -n "$py" ]; then
    cat >"$tmp/a.py" <<PY
import asyncio, aiohttp
async def main():
    sem = asyncio.Semaphore($cap)
    conn = aiohttp.TCPConnector(limit=$cap)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one():
            async with sem:
                async with s.get("$url") as r:
                    await r.read()
        await asyncio.gather(*(one() for _ in range($n)))
asyncio.run(main())
PY
    cpu_of "python aiohttp" "$py" "$tmp/a.py"
else
    echo "python aiohttp: not installed (Debian: python3-aiohttp), skipped"
fi
exit 0
