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
# Prints each wall time (best of RUNS interleaved rounds, default 3; every
# run listed) and the ratios to the
# floor, and tcpcheck's peak RSS at -c 10000.
set -u
declare -A all
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

# wall time of one run of "$@" (seconds); output in $work/out, $work/err
wall() {
    local s=$(date +%s.%N)
    "$@" >"$work/out" 2>"$work/err"
    printf '%.3f' "$(echo "$(date +%s.%N) - $s" | bc -l)"
}

# The contenders run in turn, round after round (best of $runs each), so
# that a change in the machine's load hits them all alike.
declare -A T
have_jobs=0
"$tc" --help | grep -q -- '-j, --jobs' && have_jobs=1
n=$(nproc)
names=(floor tcpcheck)
[ "$have_jobs" = 1 ] && names+=(jobs)
command -v nmap >/dev/null && names+=(nmap)
declare -A what
for r in $(seq "$runs"); do
    for name in "${names[@]}"; do
        case $name in
        floor) t=$(wall "$floor" 127.0.0.1 1 65535); found=$(cat "$work/out") ;;
        tcpcheck) t=$(wall "$tc" -p 1-65535 127.0.0.1 --open-only)
                  found=$(grep -o '[0-9]* open' "$work/err" | head -1) ;;
        jobs) t=$(wall "$tc" -j "$n" -p 1-65535 127.0.0.1 --open-only)
              found=$(grep -o '[0-9]* open' "$work/err" | head -1) ;;
        nmap) t=$(wall nmap -sT -T5 -p- -n -Pn 127.0.0.1)
              found="$(grep -c '/tcp *open' "$work/out") open" ;;
        esac
        all[$name]="${all[$name]:-} $t"
        if [ -z "${T[$name]:-}" ] || [ "$(echo "$t < ${T[$name]}" | bc -l)" = 1 ]; then
            T[$name]=$t
        fi
        what[$name]=$found
    done
done
T[asyncio]=$(wall python3 "$work/aio.py"); what[asyncio]=$(cat "$work/out")

echo "ports 1-65535 on 127.0.0.1, $(tr -d '\n' <"$work/ready") listeners open, $n cores, load $(cut -d' ' -f1-3 /proc/loadavg); best of $runs interleaved rounds"
printf '  %-26s %s s   (runs:%s)  %s\n' "floor (blocking loop)" "${T[floor]}" "${all[floor]}" "${what[floor]}"
printf '  %-26s %s s   (runs:%s)  %s\n' "tcpcheck -c 1024" "${T[tcpcheck]}" "${all[tcpcheck]}" "${what[tcpcheck]}"
[ -n "${T[jobs]:-}" ] && printf '  %-26s %s s   (runs:%s)  %s\n' "tcpcheck -j $n" "${T[jobs]}" "${all[jobs]}" "${what[jobs]}"
if [ -n "${T[nmap]:-}" ]; then
    printf '  %-26s %s s   (runs:%s)  %s\n' "nmap -sT -T5 -p-" "${T[nmap]}" "${all[nmap]}" "${what[nmap]}"
else
    echo "  nmap: not installed (and not root, or apt-get failed): skipped"
fi
printf '  %-26s %s s   (1 run)  %s\n' "asyncio (512 in flight)" "${T[asyncio]}" "${what[asyncio]}"

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
echo "ratios:"
echo "  tcpcheck / floor        $(ratio "${T[tcpcheck]}" "${T[floor]}")   (target <= 1.3)"
[ -n "${T[jobs]:-}" ] && echo "  tcpcheck -j / floor     $(ratio "${T[jobs]}" "${T[floor]}")"
[ -n "${T[nmap]:-}" ] && echo "  nmap / tcpcheck         $(ratio "${T[nmap]}" "${T[tcpcheck]}")   (target >= 2)"
echo "  asyncio / tcpcheck      $(ratio "${T[asyncio]}" "${T[tcpcheck]}")   (target >= 10)"

# peak RSS at -c 10000 (GNU time's %M, KiB): the scan above, and 10000
# probes that all wait (the full listener) so that every slot is taken
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$work/rss" "$tc" -c 10000 -p 1-65535 127.0.0.1 --open-only >/dev/null 2>&1
    echo "tcpcheck -c 10000 peak RSS, the scan: $(tail -1 "$work/rss") KiB"
    # (opened only now: a blocking connect to it would hang the floor)
    python3 - "$work/t10k" <<'PY' &
import socket, sys, time
full = socket.socket(); full.bind(("127.0.0.1", 0)); full.listen(0)
fillers = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(full.getsockname())
    except BlockingIOError: pass
    fillers.append(c)
time.sleep(0.3)
open(sys.argv[1] + ".tmp", "w").write(("127.0.0.1:%d\n" % full.getsockname()[1]) * 10000)
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
PY
    full_pid=$!
    for _ in $(seq 100); do [ -s "$work/t10k" ] && break; sleep 0.1; done
    /usr/bin/time -f '%M' -o "$work/rss" "$tc" -c 10000 -t 1s -f "$work/t10k" --open-only >/dev/null 2>"$work/err"
    kill "$full_pid" 2>/dev/null
    echo "tcpcheck -c 10000 peak RSS, 10000 probes waiting at once: $(tail -1 "$work/rss") KiB ($(grep -o '[0-9]* timeout' "$work/err"))"
fi
