# proxy_env.sh: start and stop private proxies on 127.0.0.1 for the proxy
# tests and the through-proxy benchmark, each with its own configuration
# file in a state folder, in the foreground of a background job (never a
# system service), on a random free port. Sourced (bash).
#
#   free_port                        prints a port nobody listens on
#   wait_port PORT PID               waits (5 s at most) for PORT to answer
#   tinyproxy_start DIR [USER PASS]  sets TINYPROXY_PORT, TINYPROXY_PID
#   squid_start DIR [USER PASS]      sets SQUID_PORT, SQUID_PID (Basic auth
#                                    with USER PASS: others get 407); its
#                                    access.log has "IP:PORT METHOD URL
#                                    STATUS" per request (the client's port
#                                    tells its connections apart); lines in
#                                    SQUID_EXTRA go before the allow rule
#   microsocks_start [USER PASS]     sets SOCKS_PORT, SOCKS_PID
#   proxy_stop PID                   stops one of them (by pid)

free_port() {
  local port
  for _ in $(seq 50); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
  done
  return 1
}

wait_port() {
  local port="$1" pid="$2"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

tinyproxy_start() {
  local dir="$1" user="${2:-}" pass="${3:-}"
  command -v tinyproxy >/dev/null || return 77
  mkdir -p "$dir"
  TINYPROXY_PORT=$(free_port) || return 1
  {
    echo "Port $TINYPROXY_PORT"
    echo "Listen 127.0.0.1"
    echo "Timeout 60"
    echo "MaxClients 1000"
    echo "Allow 127.0.0.1"
    echo "LogLevel Error"
    echo "LogFile \"$dir/tinyproxy.log\""
    echo "DisableViaHeader Yes"
    if [[ -n "$user" ]]; then echo "BasicAuth $user $pass"; fi
    if [[ $(id -u) == 0 ]]; then echo "User root"; echo "Group root"; fi
  } >"$dir/tinyproxy.conf"
  : >"$dir/tinyproxy.log"
  tinyproxy -d -c "$dir/tinyproxy.conf" >"$dir/tinyproxy.out" 2>&1 &
  TINYPROXY_PID=$!
  wait_port "$TINYPROXY_PORT" "$TINYPROXY_PID" || { cat "$dir/tinyproxy.out" >&2; return 1; }
}

squid_start() {
  local dir="$1" user="${2:-}" pass="${3:-}"
  command -v squid >/dev/null || [[ -x /usr/sbin/squid ]] || return 77
  mkdir -p "$dir"
  SQUID_PORT=$(free_port) || return 1
  local auth=""
  if [[ -n "$user" ]]; then
    # An htpasswd line made with openssl (apr1), read by squid's own helper.
    printf '%s:%s\n' "$user" "$(openssl passwd -apr1 "$pass")" >"$dir/passwd"
    auth="auth_param basic program /usr/lib/squid/basic_ncsa_auth $dir/passwd
auth_param basic realm asynckit-test
acl authed proxy_auth REQUIRED
http_access deny !authed"
  fi
  cat >"$dir/squid.conf" <<CONF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $dir/squid.pid
cache_log $dir/cache.log
logformat ak %>a:%>p %rm %ru %>Hs
access_log stdio:$dir/access.log ak
cache_store_log none
cache deny all
cache_mem 8 MB
coredump_dir $dir
netdb_filename none
shutdown_lifetime 0 seconds
max_filedescriptors 4096
acl SSL_ports port 1-65535
acl Safe_ports port 1-65535
acl CONNECT method CONNECT
acl localnet src 127.0.0.1/32
$auth
${SQUID_EXTRA:-}
http_access allow localnet
http_access deny all
via off
forwarded_for delete
client_persistent_connections on
server_persistent_connections on
CONF
  if [[ $(id -u) == 0 ]]; then
    echo "cache_effective_user proxy" >>"$dir/squid.conf"
    chown -R proxy "$dir" 2>/dev/null || true
    chmod 755 "$dir"
  fi
  # -N: one process. SQUID_WORKERS=N (N > 1): SMP workers, which need
  # --foreground (-N turns SMP off); the pid is then the master's.
  local fg=(-N)
  if [[ "${SQUID_WORKERS:-1}" -gt 1 ]]; then
    echo "workers $SQUID_WORKERS" >>"$dir/squid.conf"
    fg=(--foreground)
  fi
  squid "${fg[@]}" -f "$dir/squid.conf" >"$dir/squid.out" 2>&1 &
  SQUID_PID=$!
  for _ in $(seq 4); do wait_port "$SQUID_PORT" "$SQUID_PID" && return 0; done
  cat "$dir/squid.out" "$dir/cache.log" >&2 2>/dev/null
  return 1
}

microsocks_start() {
  local user="${1:-}" pass="${2:-}"
  command -v microsocks >/dev/null || return 77
  SOCKS_PORT=$(free_port) || return 1
  if [[ -n "$user" ]]; then
    microsocks -i 127.0.0.1 -p "$SOCKS_PORT" -u "$user" -P "$pass" >/dev/null 2>&1 &
  else
    microsocks -i 127.0.0.1 -p "$SOCKS_PORT" >/dev/null 2>&1 &
  fi
  SOCKS_PID=$!
  wait_port "$SOCKS_PORT" "$SOCKS_PID"
}

proxy_stop() {
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
