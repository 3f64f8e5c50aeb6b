#!/usr/bin/env bash
# Regenerates examples/gateway/hot-text.ld, the linker script that places the code gw-gateway
# runs ahead of the rest of its .text (the script's header and benches/README.md say why):
# runs a release build under callgrind while it loads the harness's 5,000-route configuration
# and the built-in demo, serves HTTP/1.1 and h2c requests (with and without a 4 KiB body),
# applies route edits and new route files and answers the admin endpoints; then lists the
# functions that ran as section patterns.
#
#   benches/load/hot-text.sh     (about 3 min on two cores with the release build's
#                                dependencies built; valgrind, h2load, curl, python3)
#
# Rerun it when the request path or the loader changed much; a stale script only gathers less.
# Only loopback addresses are used (127.0.92.0/24, and the demo's 127.0.0.1:8080).
# Everything started is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/benches/load"
PY="python3 $HERE/bench.py"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
OUT="$ROOT/examples/gateway/hot-text.ld"

GW_ADDR=127.0.92.1      # the 5,000-route Gateway
BASE_ADDR=127.0.92.2    # a 1-route Gateway, edited
ADMIN=127.0.92.3        # admin server of each run
export GW_BENCH_BACKEND=127.0.92.10  # gw-echo: :3000 and :3002 (route edits flip the port)

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
apt_install "${need[@]}"

# gw-gateway on its own, as the README builds it (see run.sh), and with the linker's default
# layout: valgrind reads the code of `.text` only, and sees code moved out of it as code of no
# object. The profiled binary is a copy; cargo links the next build with the script again.
(cd "$ROOT" && GW_HOT_TEXT=0 cargo build --release -q -p gw-gateway && cargo build --release -q -p gw-echo)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
workdir gw-hot-text
mkdir "$W/bin"
cp "$BIN/gw-gateway" "$W/bin/gw-gateway"
GW="$W/bin/gw-gateway"

for port in 3000 3002; do
  HTTP_PORT=$port H2C_PORT=$((port + 1)) "$BIN/gw-echo" --listen "$GW_BENCH_BACKEND" >/dev/null 2>&1 &
  PIDS+=($!)
done

# callgrind: every instruction address (`--dump-instr`), written when the process exits.
profile() { # name args...
  local name=$1; shift
  valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$W/cg.$name" \
    "$GW" --admin "$ADMIN:15000" "$@" >"$W/$name.log" 2>&1 &
  GW_PID=$!
  PIDS+=($GW_PID)
}
finish() { # stop the profiled gateway (SIGTERM: its drain and exit run too)
  kill -TERM "$GW_PID"
  wait "$GW_PID" || true
}

# ---- 5,000 routes: loading them, requests ---------------------------------------------------
$PY gen-scale "$W/scale" "$GW_ADDR" 5000
head -c 4096 /dev/zero | tr '\0' 'x' >"$W/4k"
requests() { # base URL path...: HTTP/1.1 and h2c, without and with a 4 KiB body
  local base=$1; shift
  for path in "$@"; do
    for proto in http/1.1 h2c; do
      local plain body
      plain=$(h2load -n 400 -c 4 -t 1 -p $proto "$base$path")
      body=$(h2load -n 200 -c 2 -t 1 -p $proto -d "$W/4k" "$base$path")
      grep -q "400 succeeded" <<<"$plain" && grep -q "200 succeeded" <<<"$body" ||
        { echo "requests to $base$path ($proto) failed" >&2; return 1; }
    done
  done
}
profile scale --config "$W/scale" --access-log text
$PY wait-ready "$ADMIN:15000" "http://$GW_ADDR:8080/r/0" 900 >/dev/null
requests "http://$GW_ADDR:8080" /r/0 /r/4999
curl -s -o /dev/null "http://$GW_ADDR:8080/none"  # 404
for p in healthz readyz status config_dump metrics; do curl -s -o /dev/null "http://$ADMIN:15000/$p"; done
finish

# ---- reloads (500 routes, the same code; each change under callgrind takes seconds) -----------
mkdir -p "$W/conf" "$W/stage"
$PY gen-scale "$W/conf" "$GW_ADDR" 500
$PY gen-base "$W/base" "$BASE_ADDR"
mv "$W/base/gw.yaml" "$W/conf/gw.yaml"  # both declare GatewayClass gw-bench: one object
profile reload --config "$W/conf" --access-log off
$PY wait-ready "$ADMIN:15000" "http://$BASE_ADDR:8080/x" 300 >/dev/null
# Three edits: the backend port flips, a header filter comes (edit-loop's edits 2 and 3).
$PY edit-loop "$W/conf" "$BASE_ADDR" "$ADMIN:15000" 3 >/dev/null || { echo "edits not applied" >&2; exit 1; }
requests "http://$BASE_ADDR:8080" /x
$PY propagate "$ADMIN:15000" "$GW_ADDR:8080" "$W/conf" "$W/stage" 3 "$W/p1" >/dev/null ||
  { echo "propagate (new files) failed" >&2; exit 1; }
$PY propagate "$ADMIN:15000" "$GW_ADDR:8080" "$W/conf" "$W/stage" 3 "$W/p2" edit >/dev/null ||
  { echo "propagate (edits) failed" >&2; exit 1; }
finish

# ---- the built-in demo (what `cargo run --release -p gw-gateway` serves) -----------------------
profile demo
$PY wait-ready "$ADMIN:15000" "http://127.0.0.1:8080/hello" 300 >/dev/null
for _ in $(seq 20); do curl -s -o /dev/null http://127.0.0.1:8080/hello; done
curl -s -o /dev/null http://127.0.0.1:8080/v2/x
curl -s -o /dev/null "http://$ADMIN:15000/status"
finish

$PY hot-text "$GW" "$OUT" "$W/cg.scale" "$W/cg.reload" "$W/cg.demo"
