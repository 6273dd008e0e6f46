# Sourced by scripts/*.sh: repo root, PATH, job count, build-dir hygiene.
XXNET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$XXNET_ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
XXNET_JOBS="${XXNET_JOBS:-$(nproc 2>/dev/null || echo 2)}"

# A CMake build directory configured from another checkout (a moved or
# copied tree) cannot be reused: CMake refuses it. Start it afresh.
xxnet_check_build_dir() {
  local dir="$1" cache="$1/CMakeCache.txt" home
  [ -f "$cache" ] || return 0
  home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")"
  if [ -n "$home" ] && [ "$(cd "$home" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
    echo "build directory $dir was configured for $home; starting it afresh"
    rm -rf "$dir"
  fi
}
