#!/bin/bash
# Instructions per message with callgrind, using the profiling driver
# examples/profile.rs (see its header). Usage: scripts/profile.sh [OUTDIR]
# Prints instructions per 64 B one-way message (all threads, setup
# subtracted) and per 64 B round trip, and the driver's allocation counts.
set -euo pipefail
out=${1:-/tmp/xxnet-profile}
mkdir -p "$out"
cargo build --release --example profile >/dev/null 2>&1
p=target/release/examples/profile
ir() { grep -h "^summary:" "$1" | awk '{print $2}'; }
run() { # name args...
    local name=$1; shift
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$name" $p "$@" 2>/dev/null | sed "s/^/  /"
}
run oneway.N oneway 200000 256
run oneway.0 oneway 0 256
run rtt.N rtt 2000
run rtt.0 rtt 0
awk -v a="$(ir "$out/cg.oneway.N")" -v b="$(ir "$out/cg.oneway.0")" \
    'BEGIN { printf "oneway: %.0f instructions per message\n", (a - b) / 200000 }'
awk -v a="$(ir "$out/cg.rtt.N")" -v b="$(ir "$out/cg.rtt.0")" \
    'BEGIN { printf "rtt: %.0f instructions per round trip\n", (a - b) / 2000 }'
$p idle 1000 | sed "s/^/  /"
echo "callgrind files in $out (callgrind_annotate --inclusive=yes $out/cg.oneway.N)"
