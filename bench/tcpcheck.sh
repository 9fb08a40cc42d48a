#!/usr/bin/env bash
# bench/tcpcheck.sh [BUILD_DIR]: tcpcheck against the alternatives, side by
# side in one run, over ports 1-65535 of 127.0.0.1 while a few hundred
# listeners are open (issue 12). Never a timed test: figures to read.
#
#   tcpcheck -c 1024        the tool (one loop)
#   tcpcheck -j N           a loop per core (N = nproc)
#   floor                   bench_tcpcheck_floor: blocking connect()/close()
#                           in a loop, one core, no event loop
#   nmap -sT -T5 -p-        installed from Debian when missing and root;
#                           skipped with a message otherwise
#   asyncio                 a Python asyncio prober, 512 in flight
#
# Prints each wall time (best of RUNS, default 3) and the ratios to the
# floor, and tcpcheck's peak RSS at -c 10000.
set -u
build=${1:-build}
runs=${RUNS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
tc=$build/tcpcheck
floor=$build/bench_tcpcheck_floor
for b in "$tc" "$floor"; do
    [ -x "$b" ] || { echo "tcpcheck.sh: $b missing: make build first" >&2; exit 2; }
done
work=$(mktemp -d)
listeners_pid=
cleanup() { [ -n "$listeners_pid" ] && kill "$listeners_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A few hundred listeners (accepting nothing: the kernel completes the
# handshakes) so that the scan finds open ports, not only refusals.
python3 - "$work/ready" <<'PY' &
import socket, sys, time
socks = []
for _ in range(300):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(512); socks.append(s)
open(sys.argv[1], "w").write("%d\n" % len(socks))
time.sleep(3600)
PY
listeners_pid=$!
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done

cat >"$work/aio.py" <<'PY'
import asyncio, sys
async def probe(sem, port, res):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
            w.close()
            res[0] += 1
        except (OSError, asyncio.TimeoutError):
            res[1] += 1
async def main():
    sem = asyncio.Semaphore(512)
    res = [0, 0]
    await asyncio.gather(*(probe(sem, p, res) for p in range(1, 65536)))
    print("open %d other %d" % tuple(res))
asyncio.run(main())
PY

if ! command -v nmap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing nmap from Debian..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nmap >/dev/null 2>&1 ||
            (apt-get update -qq >/dev/null 2>&1 &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nmap >/dev/null 2>&1)
    fi
fi

# best wall time of $runs runs of "$@" (seconds), output to $work/out
best() {
    local b= t
    for _ in $(seq "$runs"); do
        local s=$(date +%s.%N)
        "$@" >"$work/out" 2>"$work/err"
        t=$(echo "$(date +%s.%N) - $s" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    printf '%.3f' "$b"
}

declare -A T
echo "ports 1-65535 on 127.0.0.1, $(cat "$work/ready" | tr -d '\n') listeners open, $(nproc) cores, best of $runs"
T[floor]=$(best "$floor" 127.0.0.1 1 65535); echo "  floor (blocking loop)   ${T[floor]} s   $(cat "$work/out")"
T[tcpcheck]=$(best "$tc" -p 1-65535 127.0.0.1 --open-only)
echo "  tcpcheck -c 1024        ${T[tcpcheck]} s   $(grep -o '[0-9]* open' "$work/err" | head -1)"
if "$tc" --help | grep -q -- '-j, --jobs'; then
    n=$(nproc)
    T[jobs]=$(best "$tc" -j "$n" -p 1-65535 127.0.0.1 --open-only)
    echo "  tcpcheck -j $n           ${T[jobs]} s   $(grep -o '[0-9]* open' "$work/err" | head -1)"
fi
if command -v nmap >/dev/null; then
    T[nmap]=$(best nmap -sT -T5 -p- -n -Pn 127.0.0.1)
    echo "  nmap -sT -T5 -p-        ${T[nmap]} s   $(grep -c '/tcp *open' "$work/out") open"
else
    echo "  nmap: not installed (and not root, or apt-get failed): skipped"
fi
runs_saved=$runs; runs=1
T[asyncio]=$(best python3 "$work/aio.py"); echo "  asyncio (512 in flight) ${T[asyncio]} s   $(cat "$work/out") (1 run)"
runs=$runs_saved

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
echo "ratios:"
echo "  tcpcheck / floor        $(ratio "${T[tcpcheck]}" "${T[floor]}")   (target <= 1.3)"
[ -n "${T[jobs]:-}" ] && echo "  tcpcheck -j / floor     $(ratio "${T[jobs]}" "${T[floor]}")"
[ -n "${T[nmap]:-}" ] && echo "  nmap / tcpcheck         $(ratio "${T[nmap]}" "${T[tcpcheck]}")   (target >= 2)"
echo "  asyncio / tcpcheck      $(ratio "${T[asyncio]}" "${T[tcpcheck]}")   (target >= 10)"

# peak RSS at -c 10000 (GNU time's %M, KiB)
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$work/rss" "$tc" -c 10000 -p 1-65535 127.0.0.1 --open-only >/dev/null 2>&1
    echo "tcpcheck -c 10000 peak RSS: $(tail -1 "$work/rss") KiB"
fi
