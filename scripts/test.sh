#!/usr/bin/env bash
# The test command (README's second command, and all that .ci/run does):
# installs the Debian packages, builds with warnings as errors and runs
# every test, then runs the container tests (docker/compose.yml and the
# package in a clean container, under a dockerd of its own), then builds
# with ASan+UBSan and runs the tests again, then builds the libFuzzer
# harnesses with clang and runs each for a short time.
# Run as root on Debian 12 (integration tests create device nodes and
# network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
JOBS=$(nproc)

build() {
    local dir=$1
    shift
    cmake -S . -B "$dir" -DNVMET_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$JOBS"
}

echo "== build (warnings are errors)"
build build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== tests"
ctest --test-dir build/release --output-on-failure -LE docker

# scripts/docker-test.sh: 106-140 s cold (debootstrap, image builds),
# 27-34 s warm; it stops the dockerd it started and leaves nothing behind
echo "== containers (docker/compose.yml failover, the package in a clean container)"
bash scripts/deps.sh docker
ctest --test-dir build/release --output-on-failure -L docker

echo "== build (ASan + UBSan)"
build build/asan -DCMAKE_BUILD_TYPE=Debug -DNVMET_SANITIZE=ON
echo "== tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan --output-on-failure -LE kernel

echo "== build (libFuzzer harnesses: clang, ASan + UBSan)"
cmake -S . -B build/fuzz -DNVMET_WERROR=ON -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVMET_FUZZ=ON >/dev/null
cmake --build build/fuzz -j"$JOBS" --target fuzzers
echo "== fuzz (each harness 20 s over its corpus)"
ctest --test-dir build/fuzz --output-on-failure -L fuzz
