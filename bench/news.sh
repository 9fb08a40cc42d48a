#!/usr/bin/env bash
# bench/news.sh [BUILD_DIR]: the news tool against the alternatives, side by
# side in one run (issue 14). A local server (build/bench_news_server: news's
# demo server in its own process) serves N generated RSS feeds of 20 items
# (~17 KiB each), each answered DELAY_MS after its request; every contender
# fetches and parses all of them with CAP in flight:
#
#   news             build/news -c CAP --per-host CAP -f URLS (fresh state dir)
#   sfeed_update     Debian's sfeed, its documented parallelism: maxjobs=CAP in
#                    a generated sfeedrc (curl + sfeed + sort per feed)
#   python           bench/news_peer.py: aiohttp + feedparser, CAP in flight
#   curl             curl --parallel --parallel-max CAP, bodies to /dev/null:
#                    transfers only, no parsing: this machine's floor now
#
# Prints each one's wall time (best of RUNS interleaved rounds, every run
# listed; sfeed_update in SFEED_RUNS of them, default 1: it forks ten
# processes per feed), CPU time (user + system of the process and all its children, from
# GNU time) and peak RSS (of the largest single process), then the ratios:
# news's wall time against the ideal ceil(N / CAP) x DELAY_MS (target
# <= 1.1) and its CPU per feed against the Python script's (target <= 1/5).
# Installs sfeed, python3-aiohttp, python3-feedparser and time from Debian
# when missing and root; skips what it cannot run, with a message. A
# benchmark: never a timed test, exits 0 unless the server cannot run.
#
# Environment: N (1000), DELAY_MS (50), CAP (50), RUNS (3), SFEED_RUNS (1).
set -u
build=${1:-build}
n=${N:-1000}
delay_ms=${DELAY_MS:-50}
cap=${CAP:-50}
runs=${RUNS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
news=$build/news
srv=$build/bench_news_server
[ -x "$srv" ] || { echo "news.sh: $srv missing: make build first" >&2; exit 2; }
work=$(mktemp -d)
srv_pid=
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# ---- what the peers need (Debian packages) ---------------------------------
py=/usr/bin/python3
have_py() { "$py" -c 'import aiohttp, feedparser' 2>/dev/null; }
missing=()
command -v sfeed_update >/dev/null || missing+=(sfeed)
[ -x /usr/bin/time ] || missing+=(time)
if ! have_py; then
    "$py" -c 'import aiohttp' 2>/dev/null || missing+=(python3-aiohttp)
    "$py" -c 'import feedparser' 2>/dev/null || missing+=(python3-feedparser)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} from Debian..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
            (apt-get update -qq >/dev/null 2>&1 &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1)
    else
        echo "news.sh: missing ${missing[*]} (Debian packages; not root, not installed)" >&2
    fi
fi
[ -x /usr/bin/time ] || { echo "news.sh: /usr/bin/time (Debian: time) is needed" >&2; exit 2; }

# ---- the server --------------------------------------------------------------
"$srv" "$n" "$delay_ms" >"$work/port" &
srv_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$work/port")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "news.sh: the server did not start" >&2; exit 2; }

for i in $(seq 0 $((n - 1))); do
    echo "http://127.0.0.1:$port/feed/$i feed-$i"
done >"$work/urls"
{
    echo "# sfeedrc for bench/news.sh: $n feeds, maxjobs=$cap"
    echo "sfeedpath=\"\$SFEED_BENCH_PATH\""
    echo "maxjobs=$cap"
    echo "feeds() {"
    for i in $(seq 0 $((n - 1))); do
        echo "    feed \"feed-$i\" \"http://127.0.0.1:$port/feed/$i\""
    done
    echo "}"
} >"$work/sfeedrc"

# ---- the contenders ------------------------------------------------------------
names=()
if [ -x "$news" ]; then names+=(news); else echo "news: $news not built: skipped" >&2; fi
if command -v sfeed_update >/dev/null; then names+=(sfeed); else echo "sfeed_update: not installed: skipped" >&2; fi
if have_py; then names+=(python); else echo "python aiohttp + feedparser: not installed: skipped" >&2; fi
if command -v curl >/dev/null; then
    names+=(curl)
    for i in $(seq 0 $((n - 1))); do
        echo "url = \"http://127.0.0.1:$port/feed/$i\""
        echo 'output = "/dev/null"'
    done >"$work/curl.cfg"
else
    echo "curl: not installed: the floor is skipped" >&2
fi

# run NAME ROUND: one run under GNU time; sets t_wall t_cpu t_rss and what
run() {
    local name=$1 r=$2 rc=0
    case $name in
    news)
        mkdir -p "$work/state.$r" "$work/config.$r"
        XDG_STATE_HOME=$work/state.$r XDG_CONFIG_HOME=$work/config.$r \
            /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
            "$news" -c "$cap" --per-host "$cap" -f "$work/urls" >"$work/out" 2>"$work/err" || rc=$?
        what="exit $rc, $(grep -c . "$work/out") lines out"
        ;;
    sfeed)
        mkdir -p "$work/sfeed.$r"
        SFEED_BENCH_PATH=$work/sfeed.$r \
            /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
            sfeed_update "$work/sfeedrc" >"$work/out" 2>"$work/err" || rc=$?
        what="exit $rc, $(grep -c ' OK$' "$work/out") feeds OK, $(cat "$work/sfeed.$r"/* | wc -l) items"
        rm -rf "$work/sfeed.$r"
        ;;
    python)
        /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
            "$py" "$root/bench/news_peer.py" "$work/urls" "$cap" >"$work/out" 2>"$work/err" || rc=$?
        what="exit $rc, $(tail -1 "$work/err")"
        ;;
    curl)
        /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
            curl -s -f --parallel --parallel-max "$cap" --parallel-immediate -K "$work/curl.cfg" \
            >"$work/out" 2>"$work/err" || rc=$?
        what="exit $rc (transfers only)"
        ;;
    esac
    # (GNU time puts "Command exited with non-zero status N" first, then the figures)
    read -r t_wall t_user t_sys t_rss <<<"$(tail -1 "$work/time")"
    t_cpu=$(echo "$t_user + $t_sys" | bc -l)
    if [ "$rc" != 0 ]; then
        echo "  ($name, round $r: exit status $rc; its stderr ends with:)" >&2
        tail -3 "$work/err" | sed 's/^/    /' >&2
    fi
}

declare -A W C R WHAT ALL
for r in $(seq "$runs"); do
    for name in "${names[@]}"; do
        # sfeed_update forks some ten processes per feed (a subshell, curl,
        # sfeed, sort...): minutes on a loaded machine, so one round only
        [ "$name" = sfeed ] && [ "$r" -gt "${SFEED_RUNS:-1}" ] && continue
        run "$name" "$r"
        ALL[$name]="${ALL[$name]:-} $t_wall"
        if [ -z "${W[$name]:-}" ] || [ "$(echo "$t_wall < ${W[$name]}" | bc -l)" = 1 ]; then
            W[$name]=$t_wall
            C[$name]=$t_cpu
            R[$name]=$t_rss
            WHAT[$name]=$what
        fi
    done
done

ideal=$(echo "$(( (n + cap - 1) / cap * delay_ms )) / 1000" | bc -l)
served=$(kill -TERM "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; sed -n 's/^served //p' "$work/port")
srv_pid=
echo "$n feeds (20 items, ~17 KiB each), each answering after $delay_ms ms, $cap in flight;" \
    "ideal ceil($n/$cap) x $delay_ms ms = $(printf '%.2f' "$ideal") s;" \
    "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); best of $runs interleaved rounds" \
    "(sfeed_update: ${SFEED_RUNS:-1})"
printf '  %-14s %8s %10s %12s %10s   %s\n' "" "wall s" "CPU s" "CPU us/feed" "peak RSS" "(runs: wall s) check"
label() {
    case $1 in
    news) echo "news" ;; sfeed) echo "sfeed_update" ;; python) echo "python" ;;
    curl) echo "curl (floor)" ;;
    esac
}
for name in "${names[@]}"; do
    printf '  %-14s %8.2f %10.2f %12.0f %7.1f MiB   (runs:%s) %s\n' "$(label "$name")" \
        "${W[$name]}" "${C[$name]}" "$(echo "${C[$name]} * 1000000 / $n" | bc -l)" \
        "$(echo "${R[$name]} / 1024" | bc -l)" "${ALL[$name]}" "${WHAT[$name]}"
done
echo "  (server: ${served:-?}; peak RSS is the largest single process: sfeed_update runs a curl, sfeed and sort per feed)"

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
echo "ratios:"
if [ -n "${W[news]:-}" ]; then
    echo "  news wall / ideal               $(ratio "${W[news]}" "$ideal")   (target <= 1.1)"
    [ -n "${C[python]:-}" ] &&
        echo "  news CPU per feed / python's    $(ratio "${C[news]}" "${C[python]}")   (target <= 0.20)"
    [ -n "${C[python]:-}" ] &&
        echo "  python CPU per feed / news's    $(ratio "${C[python]}" "${C[news]}")"
    [ -n "${C[sfeed]:-}" ] &&
        echo "  sfeed CPU per feed / news's     $(ratio "${C[sfeed]}" "${C[news]}")"
fi
[ -n "${W[sfeed]:-}" ] && echo "  sfeed_update wall / ideal       $(ratio "${W[sfeed]}" "$ideal")"
[ -n "${W[python]:-}" ] && echo "  python wall / ideal             $(ratio "${W[python]}" "$ideal")"
[ -n "${W[curl]:-}" ] && echo "  curl (floor) wall / ideal       $(ratio "${W[curl]}" "$ideal")"
[ -n "${W[curl]:-}" ] && [ -n "${W[news]:-}" ] &&
    echo "  news wall / curl's              $(ratio "${W[news]}" "${W[curl]}")"
exit 0
