#!/usr/bin/env bash
# Load harness for gw-gateway: throughput/latency against nginx and the backend directly,
# fixed-rate latency, RSS at N routes, and route-change propagation. See benches/README.md.
#
#   benches/load/run.sh            full run (~15 min)
#   benches/load/run.sh --quick    smoke run (~2 min): 1 s points, fewer points, 500 routes
#   GW_BENCH_PROFILE=dev benches/load/run.sh --quick
#                                  the same with the debug build (CI: checks that the harness
#                                  works, figures meaningless)
#
# Only loopback addresses are used (127.0.90.0/24). Everything started is stopped on exit.
set -euo pipefail

QUICK=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/load"
PY="python3 $HERE/bench.py"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

if [[ $QUICK == 1 ]]; then
  DUR=1; WARM=1; CONNS=(1 64); ROUTES=500; CHANGES=20; EDITS=20; IDLE=200
else
  DUR=10; WARM=2; CONNS=(1 16 64 256); ROUTES=5000; CHANGES=100; EDITS=20; IDLE=1000
fi
BODIES=(0 4k)
FIXED_CONNS=16
# 256 connections to each target and the idle-connection test need more than the common
# soft limit of 1,024 open files (every process started below inherits it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

GW_ADDR=127.0.90.1      # gw-gateway, throughput instance (1 route)
NGINX_ADDR=127.0.90.2   # nginx reverse proxy
SCALE_ADDR=127.0.90.3   # gw-gateway, scale instance (N routes)
BACKEND=127.0.90.10     # nginx as backend: :3000 HTTP/1.1, :3001 h2c

# ---- dependencies ---------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || need+=(nginx-light)
# policy-rc.d in containers keeps the packaged nginx service from starting; if it does start on
# a real host it listens on :80, which this harness does not use.
apt_install "${need[@]}"
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

# ---- build ----------------------------------------------------------------------------------
PROFILE=${GW_BENCH_PROFILE:-release}
# gw-gateway on its own, as `cargo build --release -p gw-gateway` builds it: built with
# another package its dependencies may get other features, and its symbols other hashes
# (which examples/gateway/hot-text.ld names for generic functions).
(cd "$ROOT" && cargo build --profile "$PROFILE" -q -p gw-gateway && cargo build --profile "$PROFILE" -q -p gw-echo)
PROFILE_DIR=$PROFILE; [[ $PROFILE == dev ]] && PROFILE_DIR=debug
GW="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE_DIR/gw-gateway"

# ---- work dir, process tracking -------------------------------------------------------------
workdir gw-load

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
NPROC=$(nproc)

wait_port() { # host port
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on $1:$2" >&2; return 1
}

# ---- backend: nginx with a 4 KiB static file (/4k) and a fixed empty 200 for every other path --
mkdir -p "$W/www" "$W/nginx-be" "$W/nginx-px"
head -c 4096 /dev/zero | tr '\0' 'x' >"$W/www/4k"
chmod -R a+rX "$W"
cat >"$W/nginx-be/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $W/nginx-be/nginx.pid;
error_log $W/nginx-be/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $W/nginx-be/tmp;
  server {
    listen $BACKEND:3000 reuseport;
    listen $BACKEND:3001 http2;
    listen $BACKEND:3002 reuseport;  # second port: route edits flip between 3000 and 3002
    location = /4k { root $W/www; }
    location / { return 200 ""; }   # every other path: 200, empty body
  }
}
EOF
nginx -p "$W/nginx-be" -c "$W/nginx-be/nginx.conf" &
BACKEND_PID=$!
PIDS+=($BACKEND_PID)

# ---- nginx reverse proxy with upstream keepalive --------------------------------------------
cat >"$W/nginx-px/nginx.conf" <<EOF
worker_processes $NPROC;
daemon off;
user root;
pid $W/nginx-px/nginx.pid;
error_log $W/nginx-px/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  http2_max_requests 10000000;
  client_body_temp_path $W/nginx-px/tmp;
  proxy_temp_path $W/nginx-px/ptmp;
  upstream backend {
    server $BACKEND:3000;
    keepalive 512;
    keepalive_requests 10000000;
  }
  server {
    listen $NGINX_ADDR:8080;
    listen $NGINX_ADDR:8081 http2;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -p "$W/nginx-px" -c "$W/nginx-px/nginx.conf" &
NGINX_PX_PID=$!
PIDS+=($NGINX_PX_PID)

# ---- gw-gateway (1 route to the backend) ----------------------------------------------------
$PY gen-base "$W/gw-conf" "$GW_ADDR"
# Access log off, as in the nginx configurations above.
"$GW" --config "$W/gw-conf" --admin "$GW_ADDR:15000" --access-log off >"$W/gw.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)

wait_port $BACKEND 3000; wait_port $BACKEND 3001; wait_port $NGINX_ADDR 8080
$PY wait-ready "$GW_ADDR:15000" "http://$GW_ADDR:8080/0" 30 >/dev/null
read -r RSS_BASE _ FILE_BASE < <($PY rss $GW_PID)

# h1 and h2c URLs per target
declare -A H1=([gw]="http://$GW_ADDR:8080" [nginx]="http://$NGINX_ADDR:8080" [direct]="http://$BACKEND:3000")
declare -A H2=([gw]="http://$GW_ADDR:8080" [nginx]="http://$NGINX_ADDR:8081" [direct]="http://$BACKEND:3001")
for t in gw nginx direct; do
  for b in "${BODIES[@]}"; do
    for u in "${H1[$t]}/$b" ; do
      code=$(curl -s -o /dev/null -w '%{http_code}' "$u"); [[ $code == 200 ]] || { echo "$u: $code" >&2; exit 1; }
    done
    code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "${H2[$t]}/$b") || code=curl-failed
    [[ $code == 200 ]] || { echo "${H2[$t]}/$b (h2c): $code" >&2; exit 1; }
  done
done

RES="$W/results.txt"
: >"$RES"
threads() { if (($1 < NPROC)); then echo "$1"; else echo "$NPROC"; fi; }

# CPU time of the process under test (gw-gateway, nginx proxy) and of the backend, sampled
# after the warm-up and when the load ends: see `bench.py cpu`.
CPU_RES="$W/cpu.txt"
: >"$CPU_RES"
declare -A UNDER_TEST=([gw]="$GW_PID" [nginx]="$NGINX_PX_PID" [direct]="")

run_point() { # kind proto body conns target [rate]
  local kind=$1 proto=$2 body=$3 c=$4 t=$5 rate=${6:-} out="$W/out.txt" log="$W/h2load.log" r
  local th; th=$(threads "$c")
  rm -f "$log"
  if [[ $kind == max && $proto == h1 ]]; then
    wrk -t "$th" -c "$c" -d "$((DUR + WARM))s" --latency "${H1[$t]}/$body" >"$out" 2>&1 &
    local tool=$! cpu0 cpu1
    sleep "$WARM"
    cpu0=$($PY cpu "${UNDER_TEST[$t]:-0}" "$BACKEND_PID")
    wait "$tool" || true
    cpu1=$($PY cpu "${UNDER_TEST[$t]:-0}" "$BACKEND_PID")
    r=$($PY parse-wrk "$out")
    echo "$proto $body $c $t ${r%% *} $cpu0 $cpu1" >>"$CPU_RES"
  else
    local url=${H2[$t]} p=h2c extra=()
    if [[ $proto == h1 ]]; then url=${H1[$t]}; p=http/1.1; fi
    if [[ $kind == fixed ]]; then
      extra=(--rps "$(( (rate + c - 1) / c ))")
      # --rps needs -D; the first requests run before the rate settles, hence the warm-up.
    fi
    h2load -p "$p" -t "$th" -c "$c" -m 1 -D "$DUR" --warm-up-time "$WARM" \
      --log-file "$log" "${extra[@]}" "$url/$body" >"$out" 2>&1 || true
    r=$($PY parse-h2load "$out" "$log")
  fi
  if [[ $kind == max ]]; then echo "$kind $proto $body $c $t $r" >>"$RES"; else echo "$kind $proto $body $rate $t $r" >>"$RES"; fi
  printf '  %-5s %-3s %-3s %6s %-6s %s\n' "$kind" "$proto" "$body" "${rate:-$c}" "$t" "$r" >&2
}

echo "== throughput: targets gw, nginx, direct; ${DUR}s per point (+${WARM}s warm-up for h2load)" >&2
echo "   (kind proto body conns target -> req/s p50_us p99_us errors)" >&2
for proto in h1 h2; do
  for b in "${BODIES[@]}"; do
    for c in "${CONNS[@]}"; do
      # Interleave targets so that background load on the machine hits all three alike.
      for t in gw nginx direct; do run_point max "$proto" "$b" "$c" "$t"; done
    done
  done
done

# Fixed-rate latency: half of gw's maximum rate at 64 connections, for each protocol and body,
# offered to all three targets through 16 connections.
echo "== fixed-rate latency (half of gw's max at 64 connections, $FIXED_CONNS connections)" >&2
for proto in h1 h2; do
  for b in "${BODIES[@]}"; do
    max=$(awk -v p="$proto" -v b="$b" '$1=="max" && $2==p && $3==b && $4==64 && $5=="gw" {print int($6)}' "$RES")
    rate=$(( ${max:-2000} / 2 ))
    ((rate >= FIXED_CONNS)) || rate=$FIXED_CONNS
    for t in gw nginx direct; do run_point fixed "$proto" "$b" "$FIXED_CONNS" "$t" "$rate"; done
  done
done

# ---- memory per idle keep-alive connection ---------------------------------------------------
# Connections that made one request and stay open, as browsers and pooling clients leave them:
# the growth of VmRSS (nginx: its master and workers) divided by their number.
echo "== memory per idle keep-alive connection: $IDLE connections" >&2
IDLE_GW=$($PY idle-rss "$GW_ADDR" 8080 "$IDLE" "$GW_PID") || IDLE_GW=failed
IDLE_NGINX=$($PY idle-rss "$NGINX_ADDR" 8080 "$IDLE" "$NGINX_PX_PID") || IDLE_NGINX=failed

# ---- route changes under load: constant traffic while the route is edited -------------------
# Each edit flips the EndpointSlice port (3000 <-> 3002) and toggles a request header filter,
# renamed into place like a ConfigMap update; wrk counts every non-2xx answer and socket error.
echo "== route changes under load: $EDITS edits while wrk runs (4 connections)" >&2
EDIT_OUT="$W/edits.txt"
wrk -t 2 -c 4 -d "$((EDITS / 2 + 5))s" --latency "${H1[gw]}/0" >"$W/edits-wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=($WRK_PID)
sleep 1
$PY edit-loop "$W/gw-conf" "$GW_ADDR" "$GW_ADDR:15000" "$EDITS" >"$EDIT_OUT" || true
wait "$WRK_PID" || true
read -r EDITS_APPLIED EDITS_MAX_MS <"$EDIT_OUT" || true
read -r E_RPS _ _ E_ERRS < <($PY parse-wrk "$W/edits-wrk.txt")
E_TOTAL=$(awk '/requests in/ {print $1}' "$W/edits-wrk.txt")
E_NON2XX=$(awk '/Non-2xx or 3xx responses/ {print $NF}' "$W/edits-wrk.txt"); E_NON2XX=${E_NON2XX:-0}

# ---- memory and propagation at N routes -----------------------------------------------------
echo "== scale: $ROUTES HTTPRoutes, each with its own Service and EndpointSlice" >&2
$PY gen-scale "$W/scale-conf" "$SCALE_ADDR" "$ROUTES"
t0=$(date +%s.%N)
"$GW" --config "$W/scale-conf" --admin "$SCALE_ADDR:15000" --access-log off >"$W/gw-scale.log" 2>&1 &
SCALE_PID=$!
PIDS+=($SCALE_PID)
$PY wait-ready "$SCALE_ADDR:15000" "http://$SCALE_ADDR:8080/r/$((ROUTES - 1))" 120 >/dev/null
t1=$(date +%s.%N)
sleep 1
read -r RSS_N HWM_N FILE_N < <($PY rss $SCALE_PID)
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$SCALE_ADDR:8080/r/0")
[[ $code == 200 ]] || { echo "scale instance: /r/0 gave $code" >&2; exit 1; }

echo "== propagation: $CHANGES one-route changes at $ROUTES routes" >&2
mkdir -p "$W/stage"
PROP=$($PY propagate "$SCALE_ADDR:15000" "$SCALE_ADDR:8080" "$W/scale-conf" "$W/stage" "$CHANGES" "$W/prop.txt") || true
read -r P_N P_MED P_P99 P_MIN P_MAX P_FAIL <<<"$PROP"
# The same, editing one route of a 500-route file (its Services and EndpointSlices included).
PROPE=$($PY propagate "$SCALE_ADDR:15000" "$SCALE_ADDR:8080" "$W/scale-conf" "$W/stage" "$CHANGES" "$W/prop-edit.txt" edit) || true
read -r PE_N PE_MED PE_P99 PE_MIN PE_MAX PE_FAIL <<<"$PROPE"

# ---- report ---------------------------------------------------------------------------------
echo
echo "# gw load harness ($([[ $QUICK == 1 ]] && echo quick || echo full) mode), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: nproc=$NPROC, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version | head -1), $(nginx -v 2>&1 | cut -d: -f2 | sed 's/^ //')"
echo "backend: nginx (1 worker) on $BACKEND; nginx proxy: $NPROC workers, upstream keepalive 512; gw-gateway: default runtime"
echo
$PY table "$RES"
$PY cpu-table "$CPU_RES"
awk -v base="$RSS_BASE" -v n="$RSS_N" -v hwm="$HWM_N" -v r="$ROUTES" -v t0="$t0" -v t1="$t1" \
    -v fb="$FILE_BASE" -v fn="$FILE_N" 'BEGIN {
  printf "Memory: gw-gateway VmRSS with 1 route %.1f MiB (file-backed %.1f); with %d routes %.1f MiB (file-backed %.1f, VmHWM %.1f MiB); (RSS_N - RSS_1) / N = %.0f bytes per route; start to ready %.2f s\n",
    base/1024, fb/1024, r, n/1024, fn/1024, hwm/1024, (n-base)*1024/r, t1-t0 }'
echo "Idle keep-alive connections ($IDLE, one request each): gw-gateway $IDLE_GW bytes each, nginx $IDLE_NGINX bytes each (growth of VmRSS)"
echo "Route changes under load: $EDITS_APPLIED of $EDITS edits applied (slowest ${EDITS_MAX_MS} ms), ${E_TOTAL:-0} requests at ${E_RPS} req/s, non-2xx answers ${E_NON2XX} (with socket errors: ${E_ERRS})"
echo "Propagation at $ROUTES routes: $P_N changes seen, median ${P_MED} ms, p99 ${P_P99} ms (min ${P_MIN}, max ${P_MAX}), failures ${P_FAIL}"
echo "Propagation at $ROUTES routes, editing one route of a 500-route file: $PE_N changes seen, median ${PE_MED} ms, p99 ${PE_P99} ms (min ${PE_MIN}, max ${PE_MAX}), failures ${PE_FAIL}"
if [[ ${GW_BENCH_STRICT:-0} == 1 ]]; then
  # CI: the harness must have worked end to end, and route changes must not fail requests.
  [[ $EDITS_APPLIED == "$EDITS" ]] || { echo "only $EDITS_APPLIED of $EDITS edits were applied" >&2; exit 1; }
  [[ $E_NON2XX == 0 ]] || { echo "$E_NON2XX non-2xx answers during route changes" >&2; exit 1; }
  [[ $P_FAIL == 0 ]] || { echo "$P_FAIL route changes were not seen within 10 s" >&2; exit 1; }
  [[ $PE_FAIL == 0 ]] || { echo "$PE_FAIL route edits were not seen within 10 s" >&2; exit 1; }
  [[ $IDLE_GW != failed ]] || { echo "idle connections to gw-gateway could not be held" >&2; exit 1; }
fi
