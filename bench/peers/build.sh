#!/usr/bin/env bash
# shellcheck disable=SC2317 # build_<peer> functions are called indirectly
# bench/peers/build.sh: build the other runtimes' echo servers (libuv, Go,
# Tokio, asyncio, uvloop) that bench/run_echo.sh runs next to cio's.
#
#   bench/peers/build.sh [--build DIR] [--no-install] [--only "libuv go ..."]
#
# Installs the Debian packages they need when some are missing (as root,
# with apt-get; otherwise it prints the apt-get line to run; --no-install
# or PEERS_NO_INSTALL=1: neither), then builds each peer into DIR/peers
# (DIR: --build, else $BUILD_DIR, else build/ at the top of the tree):
#
#   echo_libuv    bench/peers/echo_libuv.c, cc -O2 against libuv1-dev
#   echo_go       bench/peers/echo_go.go, Go's standard library only, GOPROXY=off
#   echo_tokio    bench/peers/echo_tokio/, cargo --release --offline, every
#                 crate from Debian's librust-*-dev (/usr/share/cargo/registry)
#   echo_asyncio  a launcher: python3 echo_asyncio.py
#   echo_uvloop   a launcher: python3 echo_asyncio.py --uvloop (python3-uvloop)
#
# A peer that cannot be built is reported and skipped (and an old binary of
# it removed, so that run_echo.sh does not measure a stale one); that is
# never an error: the exit status is 0, or 2 for bad usage. No network but
# Debian's package archive: no crates.io, no Go module proxy.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD_DIR:-$root/build}
INSTALL=1
[ "${PEERS_NO_INSTALL:-0}" = 1 ] && INSTALL=0
ALL="libuv go tokio asyncio uvloop"
ONLY=$ALL

usage() {
    echo "build.sh: $*" >&2
    sed -n '5p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --build) [ $# -ge 2 ] || usage "--build needs a value"; BUILD=$2; shift ;;
    --only) [ $# -ge 2 ] || usage "--only needs a value"; ONLY=$2; shift ;;
    --no-install) INSTALL=0 ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) usage "unknown option '$1'" ;;
    esac
    shift
done
for p in $ONLY; do
    case " $ALL " in *" $p "*) ;; *) usage "unknown peer '$p' (known: $ALL)" ;; esac
done
mkdir -p "$BUILD/peers" || exit 0
OUT=$(cd "$BUILD/peers" && pwd) # absolute: the builds below change directory
LOG=$OUT/build.log
: >"$LOG"

# ---- Debian packages ---------------------------------------------------------
# package: what needs it
PACKAGES="libuv1-dev pkg-config golang-go python3 python3-uvloop librust-tokio-dev cargo"
wanted() {
    local pkgs="" p
    for p in $ONLY; do
        case "$p" in
        libuv) pkgs="$pkgs libuv1-dev pkg-config" ;;
        go) pkgs="$pkgs golang-go" ;;
        tokio) pkgs="$pkgs librust-tokio-dev cargo" ;;
        asyncio) pkgs="$pkgs python3" ;;
        uvloop) pkgs="$pkgs python3 python3-uvloop" ;;
        esac
    done
    echo "$pkgs"
}
missing_packages() {
    local p out=""
    for p in $(wanted); do
        case " $out " in *" $p "*) continue ;; esac
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            out="$out $p"
        fi
    done
    echo "${out# }"
}

if command -v dpkg-query >/dev/null 2>&1; then
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086 # word splitting of the package list is intended
        if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "build.sh: installing $missing"
            export DEBIAN_FRONTEND=noninteractive
            if ! timeout 900 apt-get install -y -q $missing >>"$LOG" 2>&1; then
                timeout 300 apt-get update -q >>"$LOG" 2>&1
                timeout 900 apt-get install -y -q $missing >>"$LOG" 2>&1 ||
                    echo "build.sh: apt-get install failed (see $LOG); building what can be built"
            fi
        else
            echo "build.sh: missing Debian packages: $missing; to install them:"
            echo "    sudo apt-get install -y $missing"
            echo "(all of them: sudo apt-get install -y $PACKAGES)"
        fi
    fi
fi

# ---- the peers ------------------------------------------------------------------
# Each build_<peer> prints nothing and returns 0 when built, or prints why not.
build_libuv() {
    local cc=${CC:-cc} flags libs
    command -v "$cc" >/dev/null 2>&1 || { echo "no C compiler ($cc)"; return 1; }
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libuv; then
        flags=$(pkg-config --cflags libuv)
        libs=$(pkg-config --libs libuv)
    elif [ -f /usr/include/uv.h ]; then
        flags="" libs="-luv"
    else
        echo "libuv headers not found (Debian: libuv1-dev)"
        return 1
    fi
    # shellcheck disable=SC2086 # pkg-config output is a list of flags
    "$cc" -std=c11 -D_GNU_SOURCE -O2 -g -Wall $flags "$here/echo_libuv.c" $libs \
        -o "$OUT/echo_libuv" >>"$LOG" 2>&1 || { echo "cc failed (see $LOG)"; return 1; }
}

build_go() {
    local go
    go=$(command -v go || echo /usr/lib/go/bin/go)
    [ -x "$go" ] || { echo "no Go toolchain (Debian: golang-go)"; return 1; }
    local cache=${GOCACHE:-}
    if [ -z "$cache" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
        cache=$OUT/go-cache
    fi
    (
        cd "$here" || exit 1
        [ -n "$cache" ] && export GOCACHE=$cache
        # The standard library only: no module proxy, no toolchain download.
        GOPROXY=off GOFLAGS='' GOTOOLCHAIN=local GO111MODULE=off \
            "$go" build -o "$OUT/echo_go" echo_go.go
    ) >>"$LOG" 2>&1 || { echo "go build failed (see $LOG)"; return 1; }
}

build_tokio() {
    local cargo rustc
    # Debian's cargo and rustc first: the vendored crates are the versions
    # Debian built with them (a rustup toolchain in PATH works too).
    if [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ]; then
        cargo=/usr/bin/cargo rustc=/usr/bin/rustc
    else
        cargo=$(command -v cargo) || { echo "no cargo (Debian: cargo)"; return 1; }
        rustc=$(command -v rustc) || { echo "no rustc (Debian: rustc)"; return 1; }
    fi
    if ! ls -d /usr/share/cargo/registry/tokio-1.* >/dev/null 2>&1; then
        echo "Debian's tokio crate not found in /usr/share/cargo/registry (Debian: librust-tokio-dev)"
        return 1
    fi
    # Built from a copy, so that Cargo.lock and target/ stay out of the tree;
    # its .cargo/config.toml points crates-io at the Debian directory source.
    local src=$OUT/echo_tokio-src
    rm -rf "$src"
    cp -R -p "$here/echo_tokio" "$src" || { echo "cannot copy the crate to $src"; return 1; }
    (
        cd "$src" || exit 1
        RUSTC=$rustc CARGO_TARGET_DIR=$OUT/tokio-target timeout 900 \
            "$cargo" build --release --offline
    ) >>"$LOG" 2>&1 || { echo "cargo build --offline failed (see $LOG)"; return 1; }
    cp "$OUT/tokio-target/release/echo_tokio" "$OUT/echo_tokio" || { echo "no binary"; return 1; }
}

# python3 launchers: the interpreter is chosen here, once (Debian's first: it
# is the one python3-uvloop installs for).
python_with() { # python_with MODULE: a python3 that imports MODULE
    local py
    for py in /usr/bin/python3 "$(command -v python3 2>/dev/null)"; do
        [ -n "$py" ] && [ -x "$py" ] && "$py" -c "import $1" >/dev/null 2>&1 && { echo "$py"; return 0; }
    done
    return 1
}
launcher() { # launcher NAME PYTHON ARGS...
    local name=$1 py=$2
    shift 2
    cp "$here/echo_asyncio.py" "$OUT/echo_asyncio.py" || return 1
    {
        echo '#!/bin/sh'
        echo "# made by bench/peers/build.sh: bench/peers/echo_asyncio.py on $py"
        echo "exec \"$py\" \"$OUT/echo_asyncio.py\" $* \"\$@\""
    } >"$OUT/$name" && chmod +x "$OUT/$name"
}
build_asyncio() {
    local py
    py=$(python_with asyncio) || { echo "no python3 with asyncio (Debian: python3)"; return 1; }
    launcher echo_asyncio "$py"
}
build_uvloop() {
    local py
    py=$(python_with uvloop) || { echo "no python3 that imports uvloop (Debian: python3-uvloop)"; return 1; }
    launcher echo_uvloop "$py" --uvloop
}

built="" skipped=""
for p in $ONLY; do
    rm -f "$OUT/echo_$p"
    echo "== $p" >>"$LOG"
    if why=$("build_$p"); then
        built="$built $p"
        printf 'build.sh: %-8s built: %s\n' "$p" "$OUT/echo_$p"
    else
        rm -f "$OUT/echo_$p"
        skipped="$skipped $p"
        printf 'build.sh: %-8s NOT built (skipped): %s\n' "$p" "${why:-failed}"
    fi
done
echo "build.sh: built:${built:- none}; skipped:${skipped:- none}"
exit 0
