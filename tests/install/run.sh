#!/usr/bin/env bash
# Installs a built xxnet into a temporary prefix and uses it from OUTSIDE the
# build, the way a game server project would:
#   1. cmake --install BUILD --prefix TMP/prefix; checks the installed tree
#      (headers, libxxnet.so.X.Y.Z + its two symlinks, SONAME, package files)
#   2. configures and builds tests/install (find_package(xxnet), xxnet::xxnet)
#      with CMAKE_PREFIX_PATH=TMP/prefix, and runs it
#   3. compiles tests/install/main.cpp with g++ $(pkg-config --cflags --libs xxnet)
#      and runs it with LD_LIBRARY_PATH=TMP/prefix/lib
#   4. a DESTDIR install: files under DESTDIR, the .pc names the real prefix
# Exits non-zero on the first failure. Everything stays in a temporary
# directory, removed at exit.
#
#   usage: run.sh BUILD_DIR [CMAKE] [CXX]     (ctest test install_outside_project)
set -euo pipefail

BUILD=${1:?usage: run.sh BUILD_DIR [CMAKE] [CXX]}
CMAKE=${2:-cmake}
CXX=${3:-g++}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_LIMIT=30   # seconds for each program run (the program stops itself after 10)

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[[ -f "$BUILD/cmake_install.cmake" ]] || fail "$BUILD is not a configured CMake build directory"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/xxnet-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PREFIX="$TMP/prefix"
# The programs below must find the INSTALLED library, not the build tree's.
unset LD_LIBRARY_PATH PKG_CONFIG_PATH

step "cmake --install $BUILD --prefix $PREFIX"
"$CMAKE" --install "$BUILD" --prefix "$PREFIX"

step "installed tree"
for f in include/xxnet.h include/xxnet.hpp; do
  [[ -f "$PREFIX/$f" ]] || fail "missing $PREFIX/$f"
done
SONAME_LINK=$(find "$PREFIX" -name 'libxxnet.so.[0-9]*' -type l | head -n 1)
[[ -n "$SONAME_LINK" ]] || fail "no libxxnet.so.<major> symlink under $PREFIX"
LIBDIR=$(dirname "$SONAME_LINK")
SONAME=$(basename "$SONAME_LINK")
REAL=$(readlink "$LIBDIR/$SONAME")
[[ "$REAL" =~ ^libxxnet\.so\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "$SONAME -> '$REAL', expected libxxnet.so.X.Y.Z"
[[ -f "$LIBDIR/$REAL" && ! -L "$LIBDIR/$REAL" ]] || fail "$LIBDIR/$REAL is not a regular file"
[[ -x "$LIBDIR/$REAL" ]] || fail "$LIBDIR/$REAL is not executable (shared libraries are installed 0755)"
[[ -L "$LIBDIR/libxxnet.so" && "$(readlink "$LIBDIR/libxxnet.so")" == "$SONAME" ]] \
  || fail "libxxnet.so is not a symlink to $SONAME"
VERSION=${REAL#libxxnet.so.}
[[ "$SONAME" == "libxxnet.so.${VERSION%%.*}" ]] || fail "symlink $SONAME does not match version $VERSION"
DYN=$(readelf -d "$LIBDIR/$REAL")
grep -q "Library soname: \[$SONAME\]" <<<"$DYN" || fail "SONAME of $REAL is not $SONAME: $(grep -i soname <<<"$DYN")"
for f in cmake/xxnet/xxnetConfig.cmake cmake/xxnet/xxnetConfigVersion.cmake pkgconfig/xxnet.pc; do
  [[ -f "$LIBDIR/$f" ]] || fail "missing $LIBDIR/$f"
done
grep -qF "$BUILD" "$LIBDIR/cmake/xxnet/xxnetConfig.cmake" && fail "xxnetConfig.cmake refers to the build tree"
echo "ok: $LIBDIR/$REAL (SONAME $SONAME), headers, package files"

# Checks that `exe` needs the SONAME and loads the library from the prefix.
check_links() {
  local exe=$1
  readelf -d "$exe" | grep -q "Shared library: \[$SONAME\]" || fail "$exe does not need $SONAME"
  local loaded
  loaded=$(ldd "$exe" | awk -v s="$SONAME" '$1 == s { print $3 }')
  [[ "$(readlink -f "$loaded")" == "$(readlink -f "$LIBDIR/$REAL")" ]] \
    || fail "$exe loads $SONAME from '$loaded', not from $LIBDIR"
}

step "find_package(xxnet) from an outside project"
"$CMAKE" -S "$HERE" -B "$TMP/consumer" \
  -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
FOUND_DIR=$(sed -n 's/^xxnet_DIR:PATH=//p' "$TMP/consumer/CMakeCache.txt")
[[ "$(readlink -f "$FOUND_DIR")" == "$(readlink -f "$LIBDIR/cmake/xxnet")" ]] \
  || fail "find_package found xxnet in '$FOUND_DIR', not in the prefix"
"$CMAKE" --build "$TMP/consumer"
check_links "$TMP/consumer/xxnet_consumer"
timeout "$RUN_LIMIT" "$TMP/consumer/xxnet_consumer" || fail "xxnet_consumer (find_package build) failed"

step "pkg-config --cflags --libs xxnet"
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
[[ "$(pkg-config --modversion xxnet)" == "$VERSION" ]] || fail "pkg-config --modversion: $(pkg-config --modversion xxnet)"
PC_FLAGS=$(pkg-config --cflags --libs xxnet)
echo "flags: $PC_FLAGS"
# shellcheck disable=SC2086  # the flags are meant to split
"$CXX" -std=c++17 -Wall -Wextra -Werror "$HERE/main.cpp" -o "$TMP/consumer_pc" $PC_FLAGS
LD_LIBRARY_PATH="$LIBDIR" check_links "$TMP/consumer_pc"
LD_LIBRARY_PATH="$LIBDIR" timeout "$RUN_LIMIT" "$TMP/consumer_pc" || fail "consumer_pc (pkg-config build) failed"
unset PKG_CONFIG_PATH

step "DESTDIR install"
DESTDIR="$TMP/stage" "$CMAKE" --install "$BUILD" --prefix /opt/xxnet >/dev/null
STAGED_LIBDIR="$TMP/stage/opt/xxnet/${LIBDIR#"$PREFIX"/}"
[[ -L "$STAGED_LIBDIR/$SONAME" && -f "$STAGED_LIBDIR/$REAL" ]] || fail "DESTDIR install: no library in $STAGED_LIBDIR"
grep -qx "prefix=/opt/xxnet" "$STAGED_LIBDIR/pkgconfig/xxnet.pc" || fail "DESTDIR install: xxnet.pc does not say prefix=/opt/xxnet"

echo "PASS: installed xxnet $VERSION works from an outside project (find_package and pkg-config)"
