#!/usr/bin/env bash
# Builds everything (the Rust library with cargo, the C++ examples and tests
# with CMake, Release) and runs the demo: two xxnet nodes in one process
# exchanging messages over 127.0.0.1, printing every event, then a cluster
# of three named nodes making remote calls (a chained call, NO_SERVICE,
# TIMEOUT), printing every result, then a 32 MiB download between two nodes
# drawn as a progress bar.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash scripts/install-deps.sh
xxnet_check_build_dir build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$XXNET_JOBS"
echo
echo "==> build/examples/xxnet_demo"
exec build/examples/xxnet_demo
