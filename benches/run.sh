#!/usr/bin/env bash
# Every gw benchmark, one report (markdown tables on stdout, progress on stderr).
#
#   benches/run.sh           full run (~30 min): criterion routing (10 to 50,000 routes;
#                            typical, best and worst requests), compile, heap by stage at
#                            5,000 routes, then the load harness (benches/load/run.sh)
#   benches/run.sh --quick   CI smoke (~3 min after the build): the criterion benches once each
#                            in test mode with small sizes, the heap bench at 200 routes, and
#                            the load harness in quick mode on the debug build; fails if a
#                            route change under load gave a non-2xx answer
#
# The load part installs wrk, h2load and nginx with apt when missing; it is skipped (with a
# message) only when they still cannot be found.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
QUICK=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

have_load_tools() { command -v wrk >/dev/null && command -v h2load >/dev/null && command -v nginx >/dev/null; }

if [[ $QUICK == 1 ]]; then
  export GW_BENCH_QUICK=1
  echo "== criterion benches in test mode (GW_BENCH_QUICK=1), heap by stage at 200 routes" >&2
  cargo test -q -p gw-model -p gw-router --benches 2>&1 | grep -v '^$' || exit 1
  if have_load_tools || command -v apt-get >/dev/null; then
    GW_BENCH_PROFILE=dev GW_BENCH_STRICT=1 benches/load/run.sh --quick || exit 1
  else
    echo "wrk, h2load or nginx missing and no apt-get: load harness skipped" >&2
  fi
  exit 0
fi

echo "== routing (criterion)" >&2
cargo bench -q -p gw-router --bench routing -- --warm-up-time 1 --measurement-time 3 \
  --output-format bencher 2>/dev/null | tee /dev/stderr | python3 benches/load/bench.py routing-table
echo "== compile (criterion)" >&2
cargo bench -q -p gw-model --bench compile -- --warm-up-time 1 --measurement-time 5 \
  --output-format bencher 2>/dev/null | tee /dev/stderr | python3 benches/load/bench.py compile-table
echo "== heap by stage" >&2
cargo bench -q -p gw-router --bench memory 2>/dev/null
echo
if have_load_tools || command -v apt-get >/dev/null; then
  benches/load/run.sh
else
  echo "wrk, h2load or nginx missing and no apt-get: load harness skipped" >&2
fi
