#!/usr/bin/env bash
# scripts/deps.sh: make sure this machine has what cio's build needs.
#
#   scripts/deps.sh             required + optional packages (what `make check` uses)
#   scripts/deps.sh --minimal   required packages only (what `make` / `make demo` use)
#   scripts/deps.sh --dry-run   report only, never install
#
# On Debian/Ubuntu, missing packages are installed with apt-get when we are
# root or have passwordless sudo; otherwise the script prints the missing
# packages and the command that installs them, and exits 1 if a required one
# is missing. Optional packages enable the extra check stages (clang for
# ASan/UBSan, valgrind, the aarch64 cross compiler and qemu-user, nghttpd
# for the HTTP/2 test); without them those stages (tests) are skipped. With CI=true the optional ones are required.
# Quick and silent-ish when everything is present: one dpkg-query, no
# apt-get update.
set -euo pipefail

# ---------------------------------------------------------------------------
# Debian packages the build needs. New build dependencies go here.
CIO_DEB_PACKAGES=(
    cmake
    gcc
    make
    pkg-config
    libc6-dev
    libssl-dev              # libcio_tls (TLS on OpenSSL)
    libcurl4-openssl-dev    # libcio_http (HTTP client on libcurl)
    libxml2-dev             # tools/news: RSS/Atom/RDF/OPML/HTML parsing
    libjansson-dev          # tools/news: JSON Feed
)
# Debian packages for the extra check stages (required when CI=true).
CIO_DEB_OPTIONAL=(
    clang                   # ASan+UBSan stage (falls back to gcc without it)
    valgrind                # valgrind stage; valgrind.h for stack registration
    gcc-aarch64-linux-gnu   # aarch64 stage: cross compiler ...
    libc6-dev-arm64-cross   # ... its libc ...
    qemu-user               # ... and qemu-aarch64 to run the tests
    nghttp2-server          # nghttpd: the local HTTP/2 server of test_http_tls.c
)
# Without dpkg (not Debian): the command each package provides, to check at
# least that much.
declare -A CIO_PKG_COMMAND=(
    [cmake]=cmake [gcc]=cc [make]=make [pkg-config]=pkg-config
    [clang]=clang [valgrind]=valgrind [gcc-aarch64-linux-gnu]=aarch64-linux-gnu-gcc
    [qemu-user]=qemu-aarch64 [nghttp2-server]=nghttpd
)
# ---------------------------------------------------------------------------

minimal=0
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --minimal) minimal=1 ;;
        --dry-run|-n) dry_run=1 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

ci=0
case "${CI:-}" in true|1|yes) ci=1 ;; esac

say() { echo "deps: $*"; }

required=("${CIO_DEB_PACKAGES[@]}")
optional=()
if [ "$minimal" = 0 ]; then
    if [ "$ci" = 1 ]; then
        required+=("${CIO_DEB_OPTIONAL[@]}")
    else
        optional=("${CIO_DEB_OPTIONAL[@]}")
    fi
fi

# --- not Debian: check commands, never install --------------------------------
if ! command -v dpkg-query >/dev/null 2>&1; then
    miss_req=() miss_opt=()
    for p in "${required[@]}"; do
        c=${CIO_PKG_COMMAND[$p]:-}
        [ -n "$c" ] && ! command -v "$c" >/dev/null 2>&1 && miss_req+=("$c")
    done
    for p in "${optional[@]}"; do
        c=${CIO_PKG_COMMAND[$p]:-}
        [ -n "$c" ] && ! command -v "$c" >/dev/null 2>&1 && miss_opt+=("$c")
    done
    [ ${#miss_opt[@]} -gt 0 ] &&
        say "optional, skipped (their check stages will not run): ${miss_opt[*]}"
    if [ ${#miss_req[@]} -gt 0 ]; then
        say "missing required commands: ${miss_req[*]}"
        say "not a Debian system: install them with your package manager" \
            "(Debian names: ${required[*]})"
        exit 1
    fi
    say "required commands present (no dpkg: libraries not checked)"
    exit 0
fi

# --- Debian / Ubuntu ------------------------------------------------------------
# Prints the packages of "$@" that are not installed.
not_installed() {
    local installed
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null |
                awk '$2 == "installed" { print $1 }' || true)
    local p
    for p in "$@"; do
        grep -qxF "$p" <<<"$installed" || echo "$p"
    done
}

SUDO=()
can_install=0
if [ "$dry_run" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        can_install=1
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
        can_install=1
    fi
fi

apt_updated=0
run_apt() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=600 "$@"
}
apt_install() {   # apt_install PKG...: 0 when every one got installed
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        run_apt update >/dev/null || say "warning: apt-get update failed"
        apt_updated=1
    fi
    say "apt-get install $*"
    run_apt install --no-install-recommends "$@" >/tmp/cio-deps-apt.$$.log 2>&1 || {
        tail -n 20 /tmp/cio-deps-apt.$$.log | sed 's/^/    /'
        rm -f /tmp/cio-deps-apt.$$.log
        return 1
    }
    rm -f /tmp/cio-deps-apt.$$.log
}

mapfile -t miss_req < <(not_installed "${required[@]}")
miss_opt=()
[ ${#optional[@]} -gt 0 ] && mapfile -t miss_opt < <(not_installed "${optional[@]}")

if [ "$can_install" = 1 ]; then
    [ ${#miss_req[@]} -gt 0 ] && { apt_install "${miss_req[@]}" || true; }
    [ ${#miss_opt[@]} -gt 0 ] && { apt_install "${miss_opt[@]}" || true; }
    mapfile -t miss_req < <(not_installed "${required[@]}")
    miss_opt=()
    [ ${#optional[@]} -gt 0 ] && mapfile -t miss_opt < <(not_installed "${optional[@]}")
fi

# clang's sanitizer runtimes live in libclang-rt-N-dev on Debian 12+ and
# Ubuntu 23.04+, only "recommended" by clang: without them -fsanitize fails
# to link. Checked with one tiny link, installed when we can.
if [ "$minimal" = 0 ] && command -v clang >/dev/null 2>&1 &&
   ! echo 'int main(void){return 0;}' |
     clang -fsanitize=address,undefined -x c - -o /dev/null >/dev/null 2>&1; then
    rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
    if [ "$can_install" = 1 ]; then
        apt_install "$rt" || true
    fi
    if ! echo 'int main(void){return 0;}' |
         clang -fsanitize=address,undefined -x c - -o /dev/null >/dev/null 2>&1; then
        if [ "$ci" = 1 ]; then miss_req+=("$rt"); else miss_opt+=("$rt"); fi
    fi
fi

status=0
if [ ${#miss_opt[@]} -gt 0 ]; then
    say "optional, skipped: ${miss_opt[*]} (the check stages that need them are skipped;" \
        "install with: sudo apt-get install -y ${miss_opt[*]})"
fi
if [ ${#miss_req[@]} -gt 0 ]; then
    say "missing required Debian packages: ${miss_req[*]}"
    say "install them with:"
    echo "    sudo apt-get update && sudo apt-get install -y ${miss_req[*]}"
    status=1
else
    say "ok: ${required[*]}"
    [ ${#optional[@]} -gt 0 ] && [ ${#miss_opt[@]} = 0 ] && say "ok (optional): ${optional[*]}"
fi
exit "$status"
