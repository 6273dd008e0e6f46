#!/usr/bin/env bash
# Runs xxnet_echo_server and xxnet_echo_client together on 127.0.0.1 (the
# ctest `echo_example`): starts the server in the background, reads the port
# it prints, runs the client against it, then stops the server by its pid
# (SIGTERM; it must exit 0). Exits with the client's status, or 1 if the
# server misbehaves. Bounded: the server stops itself after 60 s, the client
# after its --timeout, and every wait here has a limit.
#
#   usage: run_echo.sh SERVER CLIENT [CLIENT ARGS...]
#
# Default client args: --count 10000 --size 1024 --timeout 30 (well under a
# second). Larger runs, e.g. --count 100000 --size 4096, also drive both
# programs into back-pressure (would_block, then Writable).
set -euo pipefail

SERVER=${1:?usage: run_echo.sh SERVER CLIENT [CLIENT ARGS...]}
CLIENT=${2:?usage: run_echo.sh SERVER CLIENT [CLIENT ARGS...]}
shift 2
ARGS=("$@")
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--count 10000 --size 1024 --timeout 30)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/xxnet-echo.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# Create the output files first: the background job opens them asynchronously.
: >"$TMP/server.out"
: >"$TMP/server.err"
"$SERVER" 0 --max-lifetime 60 >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!

PORT=
for _ in $(seq 1 100); do  # up to 10 s
  OUT=$(cat "$TMP/server.out"; echo .)  # the '.' keeps a trailing newline: only complete lines count
  [[ "$OUT" == *$'\n'. ]] && PORT=$(sed -n 's/^PORT \([0-9]\+\)$/\1/p' <<<"${OUT%.}")
  [[ -n "$PORT" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$PORT" ]]; then
  echo "FAIL: the echo server printed no port" >&2
  cat "$TMP/server.err" >&2
  exit 1
fi
echo "echo server pid $SERVER_PID on port $PORT"

set +e
timeout 120 "$CLIENT" "127.0.0.1:$PORT" "${ARGS[@]}"
CLIENT_RC=$?
set -e

kill -TERM "$SERVER_PID"
SERVER_RC=
for _ in $(seq 1 50); do  # up to 5 s to exit cleanly (bash reaps it; kill -0 then fails)
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    SERVER_RC=0
    wait "$SERVER_PID" || SERVER_RC=$?
    SERVER_PID=
    break
  fi
  sleep 0.1
done
cat "$TMP/server.err" >&2
if [[ -z "$SERVER_RC" ]]; then
  echo "FAIL: the echo server did not exit within 5 s of SIGTERM" >&2
  exit 1  # cleanup kills it
fi
if [[ "$SERVER_RC" -ne 0 ]]; then
  echo "FAIL: the echo server exited with status $SERVER_RC" >&2
  exit 1
fi
[[ "$CLIENT_RC" -eq 0 ]] || echo "FAIL: the echo client exited with status $CLIENT_RC" >&2
exit "$CLIENT_RC"
