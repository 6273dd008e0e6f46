#!/usr/bin/env bash
# Installs what building and testing xxnet needs, only when something is
# missing: cmake, make, g++, pkg-config, GoogleTest (Debian's libgtest-dev) and
# luajit (the Lua binding's tests). With --bench, also the peer libraries of
# benches/peers (libzmq3-dev, libnng-dev, libevent-dev).
# The Rust toolchain (cargo) must already be there. Debian/Ubuntu only (apt-get);
# runs non-interactively; uses sudo when not root.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v luajit >/dev/null 2>&1 || missing+=(luajit)
gtest_config_found() {
  local f
  for f in /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/lib/cmake/GTest/GTestConfig.cmake; do
    [ -f "$f" ] && return 0
  done
  return 1
}
if [ ! -f /usr/include/gtest/gtest.h ] || ! gtest_config_found; then
  missing+=(libgtest-dev)
fi
if [ "${1:-}" = "--bench" ]; then
  [ -f /usr/include/zmq.h ] || missing+=(libzmq3-dev)
  [ -f /usr/include/nng/nng.h ] || missing+=(libnng-dev)
  [ -f /usr/include/event2/event.h ] || missing+=(libevent-dev)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: missing ${missing[*]}; installing with apt-get"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get not found; install these yourself: ${missing[*]}" >&2
    exit 1
  fi
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO=(sudo)
    else
      echo "install-deps: not root and no sudo; install these yourself: ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "install-deps: cmake, make, g++, pkg-config, libgtest-dev and luajit are present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install-deps: cargo is in ~/.cargo/bin but not on PATH: export PATH=\"\$HOME/.cargo/bin:\$PATH\"" >&2
  else
    echo "install-deps: cargo not found; install a Rust toolchain (rustup) first" >&2
  fi
  exit 1
fi
