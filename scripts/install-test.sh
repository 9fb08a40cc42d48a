#!/usr/bin/env bash
# scripts/install-test.sh [BUILD_DIR]: install a configured and built cio
# tree (default build/) into a temporary prefix and build and run a small
# consumer against it four ways:
#   pkg-config (libcio.so), pkg-config --static (libcio.a),
#   find_package(cio) with cio::cio, and with cio::cio_static;
# and libcio_testing two ways: pkg-config cio_testing (the plain-main
# example) and find_package(cio COMPONENTS testing) with CTest
# (examples/testing_ctest).
# Ends with "N passed, N failed"; exit status 1 when any failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
build=${1:-build}
if [ ! -f "$build/CMakeCache.txt" ]; then
    echo "install-test: $build is not a configured build directory" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cio-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
passed=0 failed=0

result() {   # result NAME STATUS LOG
    if [ "$2" = 0 ]; then
        echo "PASS install_$1"
        passed=$((passed + 1))
    else
        echo "FAIL install_$1"
        sed 's/^/    /' "$3" | tail -n 30
        failed=$((failed + 1))
    fi
}

if ! cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
    result cmake_install 1 "$tmp/install.log"
    echo "$passed passed, $failed failed"
    exit 1
fi
result cmake_install 0 "$tmp/install.log"

mkdir -p "$tmp/consumer"
cat >"$tmp/consumer/main.c" <<'EOF'
#include <cio.h>
#include <stdio.h>
static int main_task(void *arg) { (void)arg; return cio_sleep(CIO_MSEC); }
int main(void) { printf("cio %s\n", cio_version_string()); return cio_run(main_task, NULL) != 0; }
EOF
cat >"$tmp/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(cio_consumer C)
find_package(cio 0.1 REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE ${CIO_TARGET})
EOF

cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
cc=${cc:-cc}
# The same sanitizer flags as the library, if any (a sanitized libcio.a
# needs the sanitizer runtime in the final link).
cflags=$(sed -n 's/^CIO_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")
case "$cflags" in
    address) cflags="-fsanitize=address,undefined" ;;
    thread) cflags="-fsanitize=thread" ;;
    *) cflags="" ;;
esac
pcdir=$(dirname "$(find "$prefix" -name cio.pc | head -n1)")
libdir=$(dirname "$pcdir")
export PKG_CONFIG_PATH=$pcdir
run_consumer() {   # run_consumer NAME EXE: runs it, and checks its library
    local name=$1 exe=$2
    if "$exe" >"$tmp/$name.run.log" 2>&1 && grep -q '^cio [0-9]' "$tmp/$name.run.log"; then
        return 0
    fi
    cat "$tmp/$name.run.log" >>"$tmp/$name.log"
    return 1
}

# 1. pkg-config, shared: must load libcio.so.0 from the prefix (when the
#    build made one: CIO_BUILD_SHARED).
if [ -e "$libdir/libcio.so" ]; then
    (
        set -e
        # shellcheck disable=SC2046,SC2086
        "$cc" $cflags -o "$tmp/pc_shared" "$tmp/consumer/main.c" \
            $(pkg-config --cflags --libs cio) -Wl,-rpath,"$libdir"
        ldd "$tmp/pc_shared" | grep "libcio.so.0 => $prefix" >/dev/null
        run_consumer pc_shared "$tmp/pc_shared"
    ) >"$tmp/pc_shared.log" 2>&1
    result pkg_config_shared $? "$tmp/pc_shared.log"
fi

# 2. pkg-config --static: libcio.a, no libcio.so needed at run time.
(
    set -e
    # shellcheck disable=SC2046,SC2086
    "$cc" $cflags -o "$tmp/pc_static" "$tmp/consumer/main.c" \
        $(pkg-config --static --cflags cio) "$libdir/libcio.a" \
        $(pkg-config --static --libs-only-other cio)
    if ldd "$tmp/pc_static" | grep libcio; then exit 1; fi
    run_consumer pc_static "$tmp/pc_static"
) >"$tmp/pc_static.log" 2>&1
result pkg_config_static $? "$tmp/pc_static.log"

# 3, 4. find_package(cio) with each exported target.
for target in cio::cio cio::cio_static; do
    name=find_package_${target#cio::}
    (
        set -e
        cmake -S "$tmp/consumer" -B "$tmp/$name" -DCMAKE_PREFIX_PATH="$prefix" \
            -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
            -DCMAKE_EXE_LINKER_FLAGS="$cflags" -DCIO_TARGET="$target"
        cmake --build "$tmp/$name"
        if [ "$target" = cio::cio ] && [ -e "$libdir/libcio.so" ]; then
            ldd "$tmp/$name/consumer" | grep "libcio.so.0 => $prefix" >/dev/null
        else
            if ldd "$tmp/$name/consumer" | grep libcio; then exit 1; fi
        fi
        run_consumer "$name" "$tmp/$name/consumer"
    ) >"$tmp/$name.log" 2>&1
    result "$name" $? "$tmp/$name.log"
done

# 5. libcio_testing through pkg-config (cio_testing.pc): the plain-main
#    example, built against the prefix and run.
(
    set -e
    # shellcheck disable=SC2046,SC2086
    "$cc" $cflags -o "$tmp/pc_testing" examples/testing_plain_main.c \
        $(pkg-config --cflags --libs cio_testing) -Wl,-rpath,"$libdir"
    "$tmp/pc_testing"
) >"$tmp/pc_testing.log" 2>&1
result pkg_config_testing $? "$tmp/pc_testing.log"

# 6. find_package(cio COMPONENTS testing) and CTest: examples/testing_ctest
#    built against the prefix, its tests run by ctest.
(
    set -e
    cmake -S examples/testing_ctest -B "$tmp/testing_ctest" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
        -DCMAKE_EXE_LINKER_FLAGS="$cflags -Wl,-rpath,$libdir"
    cmake --build "$tmp/testing_ctest"
    (cd "$tmp/testing_ctest" && ctest --output-on-failure)
) >"$tmp/testing_ctest.log" 2>&1
result find_package_testing_ctest $? "$tmp/testing_ctest.log"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
