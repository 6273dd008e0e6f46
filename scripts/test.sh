#!/usr/bin/env bash
# Runs every test of xxnet:
#   1. cargo build --release, cargo test --release --no-fail-fast (all Rust tests)
#      then the integration tests again with XXNET_TEST_IO_THREADS=2 (two reactors per context)
#   2. CMake Release build (build/) and ctest: C++ tests, the C11 header check, the demo;
#      and the peers benchmark's --quick run (benches/peers, its libraries are installed);
#      then ctest again with XXNET_TEST_IO_THREADS=2
#   3. CMake Debug build with ASan+UBSan (build-debug/) and ctest again
# Installs cmake, g++, make, pkg-config and libgtest-dev first if missing.
# Keeps going after a failing stage so every runner's summary is printed, then
# exits non-zero if anything failed.
#
# Environment: XXNET_JOBS (parallel jobs, default nproc), XXNET_CTEST_TIMEOUT
# (seconds per test, default 180), XXNET_SKIP_DEBUG=1 (skip the sanitizer build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CTEST_TIMEOUT="${XXNET_CTEST_TIMEOUT:-180}"
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
START=$(date +%s)

STAGES=()      # "name|status|seconds"
FAILED=0
PASSED_TESTS=0
FAILED_TESTS=0

# stage NAME CMD...: runs CMD, output shown and kept in $LOGS/NAME.log.
stage() {
  local name="$1" t0 rc
  shift
  echo
  echo "==> [$name] $*"
  t0=$(date +%s)
  set +e
  "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -eq 0 ]; then
    STAGES+=("$name|ok|$(($(date +%s) - t0))")
  else
    STAGES+=("$name|FAILED (exit $rc)|$(($(date +%s) - t0))")
    FAILED=1
  fi
  return "$rc"
}

# Adds a runner's counts to the totals. A failed stage that printed no failed
# test (a build error, a crash) counts as one failure.
count_cargo() {
  local log="$LOGS/$1.log" rc="$2" p f
  p=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$log" | awk '{s+=$1} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  PASSED_TESTS=$((PASSED_TESTS + p))
  FAILED_TESTS=$((FAILED_TESTS + f))
}
count_ctest() {
  local log="$LOGS/$1.log" rc="$2" line total f
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)
  total=$(echo "$line" | sed -n 's/.*out of \([0-9]*\).*/\1/p')
  f=$(echo "$line" | sed -n 's/.*passed, \([0-9]*\) tests\{0,1\} failed.*/\1/p')
  total=${total:-0}
  f=${f:-0}
  PASSED_TESTS=$((PASSED_TESTS + total - f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  FAILED_TESTS=$((FAILED_TESTS + f))
}

# ctest over one CMake build: configure, build, run.
cmake_suite() {
  local dir="$1" type="$2" tag="$3"
  shift 3
  xxnet_check_build_dir "$dir"
  if stage "cmake-$tag" cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" &&
     stage "build-$tag" cmake --build "$dir" -j "$XXNET_JOBS"; then
    local rc=0
    stage "ctest-$tag" ctest --test-dir "$dir" --output-on-failure --no-tests=error \
      --timeout "$CTEST_TIMEOUT" -j "$XXNET_JOBS" || rc=$?
    count_ctest "ctest-$tag" "$rc"
  else
    FAILED_TESTS=$((FAILED_TESTS + 1))
  fi
}

stage deps bash scripts/install-deps.sh --bench || { echo "cannot install the build dependencies" >&2; exit 1; }

if stage cargo-build cargo build --release; then
  rc=0
  stage cargo-test cargo test --release --no-fail-fast || rc=$?
  count_cargo cargo-test "$rc"

  # The integration tests again with two reactors per context (io_threads):
  # every behaviour must hold whichever reactor owns a session.
  rc=0
  stage cargo-test-io2 env XXNET_TEST_IO_THREADS=2 cargo test --release --no-fail-fast --test 'it_*' || rc=$?
  count_cargo cargo-test-io2 "$rc"

  # The Release build also builds the peers benchmark; ctest runs its --quick
  # mode, which checks every system's counts, order and payloads.
  cmake_suite build Release release -DXXNET_BENCH_PEERS=ON
  if [ -d build ]; then
    rc=0
    stage ctest-release-io2 env XXNET_TEST_IO_THREADS=2 ctest --test-dir build --output-on-failure \
      --no-tests=error --timeout "$CTEST_TIMEOUT" -j "$XXNET_JOBS" -LE bench || rc=$?
    count_ctest ctest-release-io2 "$rc"
  fi
  if [ "${XXNET_SKIP_DEBUG:-0}" != "1" ]; then
    # The Rust library is still cargo's release build; only the C/C++ code is
    # instrumented (executables linked with -fsanitize=address,undefined).
    cmake_suite build-debug Debug debug-asan -DXXNET_SANITIZE=ON
  fi
else
  FAILED_TESTS=$((FAILED_TESTS + 1))
fi

echo
echo "==> summary ($(($(date +%s) - START)) s)"
for s in "${STAGES[@]}"; do
  IFS='|' read -r name status secs <<<"$s"
  printf '  %-18s %-18s %5ss\n' "$name" "$status" "$secs"
done
if [ "$FAILED" -ne 0 ]; then
  echo "xxnet tests FAILED"
else
  echo "xxnet tests OK"
fi
echo "total: $PASSED_TESTS passed, $FAILED_TESTS failed"
exit "$FAILED"
