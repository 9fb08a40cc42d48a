# Thin wrapper over CMake; the build itself is CMakeLists.txt.
#
#   make                  build/ (RelWithDebInfo): libcio.a, libcio.so, cio_tests,
#                         bench_*, example_*
#   make check            scripts/check.sh: every test stage this machine can run
#                         (CIO_CHECK_STAGES=plain,asan make check for a subset)
#   make demo             build examples/demo.c and the news tool (and the
#                         library, nothing else) and run the demo, then
#                         `news --demo` (six feeds from a local server)
#   make bench            build and run every bench_* and bench/run_echo.sh, after
#                         bench/peers/build.sh (libuv, Go, Tokio, asyncio, uvloop
#                         echo servers; installs their Debian packages as root)
#                         (BENCH_ARGS=--quick for a short run)
#   make install          PREFIX=/usr/local (DESTDIR is honoured)
#   make clean            remove build/ and build-*/
#
# CMAKE_ARGS is passed to the configure step, e.g.
#   make CMAKE_ARGS="-DCIO_CONTEXT=ucontext"

BUILD      ?= build
PREFIX     ?= /usr/local
JOBS       ?= 2
CMAKE      ?= cmake
CMAKE_ARGS ?=
BENCH_ARGS ?=

.PHONY: all configure build deps check demo bench install clean

all: build

deps:
	@bash scripts/deps.sh --minimal

# Configure once (or again when CMAKE_ARGS are given); later builds re-run
# CMake by themselves when CMakeLists.txt or the globbed sources change.
configure: deps
	@if [ ! -f $(BUILD)/CMakeCache.txt ] || [ -n "$(CMAKE_ARGS)" ]; then \
	    echo "$(CMAKE) -S . -B $(BUILD) $(CMAKE_ARGS)"; \
	    $(CMAKE) -S . -B $(BUILD) $(CMAKE_ARGS); \
	fi

# (without our MAKEFLAGS: CMake's own makefiles are not a sub-make of this one)
CMAKE_BUILD = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(CMAKE) --build $(BUILD) -j$(JOBS)

build: configure
	$(CMAKE_BUILD)

check:
	@bash scripts/check.sh

demo:
	@if [ ! -f examples/demo.c ]; then \
	    echo "make demo: examples/demo.c does not exist (yet): nothing to run" >&2; \
	    exit 1; \
	fi
	@$(MAKE) --no-print-directory configure
	@# Only the demo and the library it links: no tests, benchmarks or fuzzers.
	@if ! $(CMAKE_BUILD) --target example_demo; then \
	    echo "make demo: could not build $(BUILD)/example_demo (CIO_BUILD_EXAMPLES=OFF?)" >&2; \
	    exit 1; \
	fi
	@if [ -f tools/news/main.c ] && ! $(CMAKE_BUILD) --target news; then \
	    echo "make demo: could not build $(BUILD)/news" >&2; \
	    exit 1; \
	fi
	$(BUILD)/example_demo
	@# news --demo: its own server on 127.0.0.1, no network (about 3 s)
	@if [ -x $(BUILD)/news ]; then \
	    echo "$(BUILD)/news --demo"; \
	    $(BUILD)/news --demo; \
	fi

# bench_echo and bench_loadgen are the pieces of bench/run_echo.sh (the echo
# servers and the load generator), and bench_news_server the feed server of
# bench/news.sh (it serves until killed), not benchmarks of their own. The peers'
# servers are built here only, never by `make` or `make check`.
bench: build
	@set -e; found=0; \
	for b in $(BUILD)/bench_*; do \
	    [ -x "$$b" ] || continue; \
	    case "$$b" in */bench_echo|*/bench_loadgen|*/bench_news_server) continue ;; esac; \
	    found=1; \
	    echo "==== $$b $(BENCH_ARGS)"; \
	    "$$b" $(BENCH_ARGS); \
	done; \
	if [ $$found = 0 ]; then echo "make bench: no bench/*.c, nothing to run"; fi
	@echo "==== bench/peers/build.sh (the other runtimes' echo servers)"
	@BUILD_DIR=$(BUILD) bash bench/peers/build.sh
	@echo "==== bench/run_echo.sh $(filter --quick,$(BENCH_ARGS))"
	@BUILD_DIR=$(BUILD) bash bench/run_echo.sh $(filter --quick,$(BENCH_ARGS))

install: build
	$(CMAKE) --install $(BUILD) --prefix "$(PREFIX)"

clean:
	rm -rf build build-*/
