# Cross toolchain: Linux on aarch64 with Debian's cross compiler, run under
# qemu-user. Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# (scripts/deps.sh installs them).
#
#   cmake -S . -B build-aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 -j2
#   qemu-aarch64 -L /usr/aarch64-linux-gnu build-aarch64/cio_tests
#   (or: ctest --test-dir build-aarch64, which uses the emulator below)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CIO_CROSS_TRIPLE aarch64-linux-gnu)
set(CIO_CROSS_SYSROOT /usr/${CIO_CROSS_TRIPLE})

set(CMAKE_C_COMPILER ${CIO_CROSS_TRIPLE}-gcc)
set(CMAKE_ASM_COMPILER ${CIO_CROSS_TRIPLE}-gcc)
set(CMAKE_AR ${CIO_CROSS_TRIPLE}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${CIO_CROSS_TRIPLE}-ranlib CACHE FILEPATH "")

# Look for libraries and headers in the target's tree only, for programs on
# the host only.
set(CMAKE_FIND_ROOT_PATH ${CIO_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# How ctest (and add_custom_command users) run the target's programs.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${CIO_CROSS_SYSROOT})
