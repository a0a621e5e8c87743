# httpbad_env.sh: start and stop the misbehaving test server (httpbad_main.c)
# for akget's shell tests. Sourced (bash). The server ends by itself after
# its --max-seconds, so a test killed before its cleanup leaves nothing.
#
#   httpbad_start BIN DIR [SECONDS]  starts it (its port file in DIR), waits
#                                    up to 5 s for its port; sets
#                                    HTTPBAD_PID, HTTPBAD_PORT and
#                                    HTTPBAD_URL (http://127.0.0.1:PORT).
#                                    Returns 1 when it did not start.
#   httpbad_stop                     stops the one started here (by pid)

HTTPBAD_PID=""

httpbad_start() {
  local bin="$1" dir="$2" seconds="${3:-240}"
  "$bin" --max-seconds "$seconds" >"$dir/httpbad.port" &
  HTTPBAD_PID=$!
  for _ in $(seq 50); do [[ -s "$dir/httpbad.port" ]] && break; sleep 0.1; done
  HTTPBAD_PORT="$(cat "$dir/httpbad.port")"
  [[ -n "$HTTPBAD_PORT" ]] || return 1
  HTTPBAD_URL="http://127.0.0.1:$HTTPBAD_PORT"
}

httpbad_stop() {
  [[ -n "$HTTPBAD_PID" ]] || return 0
  kill "$HTTPBAD_PID" 2>/dev/null || true
  wait "$HTTPBAD_PID" 2>/dev/null || true
  HTTPBAD_PID=""
}
