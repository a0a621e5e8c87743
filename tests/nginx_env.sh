# nginx_env.sh: start and stop a private nginx on 127.0.0.1 for akget's
# tests, tools/try and akbench download. Sourced (bash). The config lives in
# a temporary folder with `daemon off` and every *_temp_path moved there; the
# access log records each request's connection and status, so tests can
# count reused connections and Range answers. nginx runs as the caller (as
# root its worker runs as nobody: served files must be world-readable).
#
#   nginx_start STATE_DIR DOC_ROOT   sets NGINX_PORT and NGINX_PID; with
#                                    NGINX_TLS_DIR set (server.pem and
#                                    server.key in it, tests/tls_certs.sh)
#                                    also NGINX_TLS_PORT, serving https
#   nginx_stop                       stops the nginx started here (by pid)
#   nginx_test_work NAME             a test script's prelude: exits 77 (skip)
#                                    when nginx is not installed, else sets
#                                    work to a new folder nginx's worker can
#                                    walk into (nobody, when run as root),
#                                    and at exit stops nginx and removes it
#
# Optional: NGINX_LOG_EXTRA (more fields at the end of each log line, e.g.
# '"$http_if_range"'), NGINX_EXTRA_LOCATIONS (more location blocks),
# NGINX_HTTP_EXTRA (more directives in the http block, e.g. akbench mirror's
# open_file_cache).

nginx_bin() {
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

nginx_start() {
  local state="$1" root="$2" bin port try
  bin="$(nginx_bin)" || true
  [[ -n "$bin" ]] || { echo "nginx_start: nginx is not installed" >&2; return 77; }
  mkdir -p "$state/tmp"
  chmod 755 "$state" "$root"
  local tls_listen=""
  for try in $(seq 20); do
    # Below the kernel's ephemeral range (32768-60999), where outgoing
    # connections would take the port from under nginx.
    port=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
    # Skip ports someone listens on already (nginx would retry its bind for 2.5 s).
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
       (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
      continue
    fi
    if [[ -n "${NGINX_TLS_DIR:-}" ]]; then
      tls_listen="listen 127.0.0.1:$((port + 1)) ssl reuseport;
    ssl_certificate $NGINX_TLS_DIR/server.pem;
    ssl_certificate_key $NGINX_TLS_DIR/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:ak:1m;"
    fi
    cat >"$state/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $state/nginx.pid;
error_log $state/error.log warn;
events { worker_connections 4096; }
http {
  log_format ak '\$connection \$connection_requests \$status \$request_uri \$body_bytes_sent "\$http_range"${NGINX_LOG_EXTRA:+ $NGINX_LOG_EXTRA}';
  access_log $state/access.log ak;
  client_body_temp_path $state/tmp/body;
  proxy_temp_path $state/tmp/proxy;
  fastcgi_temp_path $state/tmp/fastcgi;
  uwsgi_temp_path $state/tmp/uwsgi;
  scgi_temp_path $state/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 60;
  default_type application/octet-stream;
  absolute_redirect off;
  ${NGINX_HTTP_EXTRA:-}
  server {
    listen 127.0.0.1:$port reuseport;
    $tls_listen
    root $root;
    location = /redirect/rel { return 302 ../files/f001.bin; }
    location = /redirect/abs { return 301 http://127.0.0.1:$port/files/f002.bin; }
    location = /redirect/loop { return 302 /redirect/loop; }
    # Compressed answers for akget --compressed: made on the fly (chunked),
    # and from a FILE.gz next to FILE (gzip_static: with a Content-Length).
    location /gz/ { alias $root/text/; gzip on; gzip_types *; gzip_min_length 1; }
    location /gzs/ { alias $root/text/; gzip_static on; }
    location /flaky/ {
      if (!-f $root/flaky-ready) {
        add_header Retry-After 1 always;
        return 503;
      }
      alias $root/files/;
    }
    ${NGINX_EXTRA_LOCATIONS:-}
  }
}
CONF
    "$bin" -p "$state" -e "$state/error.log" -c "$state/nginx.conf" >"$state/stdout" 2>&1 &
    NGINX_PID=$!
    local up=0
    for _ in $(seq 50); do
      if ! kill -0 "$NGINX_PID" 2>/dev/null; then break; fi
      # Every listening port answers (nginx binds them one by one and gives
      # up if a later one is taken).
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
         { [[ -z "$tls_listen" ]] || (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; }; then
        up=1
        break
      fi
      sleep 0.1
    done
    if ((up)); then
      NGINX_PORT=$port
      NGINX_TLS_PORT=$((port + 1))
      return 0
    fi
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
    grep -q "Address already in use" "$state/error.log" 2>/dev/null || {
      cat "$state/error.log" "$state/stdout" >&2 2>/dev/null; return 1; }
  done
  echo "nginx_start: no free port found" >&2
  return 1
}

nginx_stop() {
  if [[ -n "${NGINX_PID:-}" ]]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
  fi
}

nginx_test_work() {
  [[ -n "$(nginx_bin)" ]] || { echo "nginx not installed: skipped"; exit 77; }
  work="$(mktemp -d "${TMPDIR:-/tmp}/ak-$1.XXXXXX")"
  chmod 755 "$work"
  trap 'set +e; nginx_stop; rm -rf "$work"' EXIT
}
