#!/usr/bin/env python3
"""Helpers for benches/load/run.sh (stdlib only).

Subcommands:
  gen-base DIR ADDR                 gw config: 1 route (PathPrefix /) to the backend
  gen-scale DIR ADDR N              gw config: N HTTPRoutes, each with its own Service + EndpointSlice
  wait-ready ADMIN URL TIMEOUT      /readyz is 200, /status has a resourceVersion, URL answers 200
  rss PID                           VmRSS, VmHWM and RssFile in KiB
  idle-rss HOST PORT N PID...       opens N keep-alive connections (one GET /0 each) and holds
                                    them: -> resident bytes they added per connection to the
                                    PIDs and their children (VmRSS, summed)
  propagate ADMIN BASE CONFDIR STAGEDIR COUNT OUT [MODE]   one-route changes, write -> first
                                    200; MODE new-file (a file with a new route, default) or edit
                                    (one route of a 500-route file gets a new path)
  edit-loop CONFDIR ADDR ADMIN COUNT   edit the base route COUNT times (backend port flips,
                                    header filter toggles), each applied before the next;
                                    -> "applied slowest_ms"
  parse-wrk FILE                    -> "rps p50_us p99_us errors"
  parse-h2load FILE LOG             -> "rps p50_us p99_us errors"
  table RESULTS                     print the throughput / latency tables with ratios
  cpu PID BACKEND_PID               -> "time user_s sys_s backend_user_s backend_sys_s": CPU time
                                    so far of PID and of BACKEND_PID, each with its children
                                    (PID 0: none)
  cpu-table FILE                    CPU per request from two `cpu` samples per point (lines:
                                    proto body conns target rps SAMPLE0 SAMPLE1)
  routing-table / compile-table     criterion `--output-format bencher` (stdin) -> table
  hot-text BINARY OUT CALLGRIND...  the linker script that puts the code BINARY ran under
                                    callgrind (`--dump-instr=yes` outputs) in one place (see
                                    benches/load/hot-text.sh)
"""
import bisect
import collections
import http.client
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

# The backend the generated configurations point at (hot-text.sh runs its own elsewhere).
BACKEND_IP = os.environ.get("GW_BENCH_BACKEND", "127.0.90.10")
BACKEND_PORT = 3000

HEADER = """apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gw-bench}}
spec: {{controllerName: gw.dev/gateway}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {gw}, namespace: bench}}
spec:
  gatewayClassName: gw-bench
  addresses: [{{type: IPAddress, value: {addr}}}]
  listeners:
  - {{name: http, port: 8080, protocol: HTTP}}
"""

SVC = """---
apiVersion: v1
kind: Service
metadata: {{name: {svc}, namespace: bench}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {svc}-1, namespace: bench, labels: {{kubernetes.io/service-name: {svc}}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [{ip}]}}]
"""

FILTER = """    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-bench-edit, value: "{k}"}}]}}
"""

ROUTE = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: bench}}
spec:
  parentRefs: [{{name: {gw}}}]
  rules:
  - matches: [{{path: {{type: {ptype}, value: {path}}}}}]
    backendRefs: [{{name: {svc}, port: 80}}]
"""


def svc(name, port=BACKEND_PORT):
    return SVC.format(svc=name, port=port, ip=BACKEND_IP)


def route(name, path, service, gw, ptype="PathPrefix"):
    return ROUTE.format(name=name, path=path, svc=service, gw=gw, ptype=ptype)


def base_config(addr, k=0):
    """Edit k of the base config: even edits use backend port 3000, odd ones 3002; every
    other pair of edits adds a request header filter."""
    port = BACKEND_PORT if k % 2 == 0 else BACKEND_PORT + 2
    text = HEADER.format(gw="bench", addr=addr) + svc("backend", port) + route("all", "/", "backend", "bench")
    if (k // 2) % 2 == 1:
        text += FILTER.format(k=k)
    return text


def gen_base(d, addr):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "gw.yaml"), "w") as f:
        f.write(base_config(addr))


def config_version(admin):
    st, body = get(f"http://{admin}/metrics")
    if st != 200:
        return None
    m = re.search(rb"^gw_config_version (\d+)", body, re.M)
    return int(m.group(1)) if m else None


def edit_loop(confdir, addr, admin, count):
    applied = 0
    slowest = 0.0
    staged = os.path.join(os.path.dirname(confdir.rstrip("/")), "edit-stage.yaml")
    for k in range(1, int(count) + 1):
        before = config_version(admin)
        with open(staged, "w") as f:
            f.write(base_config(addr, k))
        t0 = time.perf_counter()
        os.rename(staged, os.path.join(confdir, "gw.yaml"))
        while time.perf_counter() - t0 < 10.0:
            v = config_version(admin)
            if v is not None and before is not None and v > before:
                applied += 1
                slowest = max(slowest, (time.perf_counter() - t0) * 1000.0)
                break
            time.sleep(0.002)
        time.sleep(0.15)  # traffic on the new config before the next edit
    print(f"{applied} {slowest:.1f}")
    return 0 if applied == int(count) else 1


def gen_scale(d, addr, n):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "gateway.yaml"), "w") as f:
        f.write(HEADER.format(gw="scale", addr=addr))
    # One file per 500 routes (a directory of files, like a ConfigMap volume).
    per = 500
    for start in range(0, n, per):
        with open(os.path.join(d, f"routes-{start:06d}.yaml"), "w") as f:
            for i in range(start, min(n, start + per)):
                f.write(svc(f"svc-{i}"))
                f.write(route(f"route-{i}", f"/r/{i}", f"svc-{i}", "scale"))


def get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return None, b""


def wait_ready(admin, url, timeout):
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        st, _ = get(f"http://{admin}/readyz")
        if st == 200:
            st, body = get(f"http://{admin}/status", timeout=10)
            if st == 200:
                doc = json.loads(body)
                rv = doc.get("metadata", {}).get("resourceVersion")
                errs = doc.get("errors") or []
                if rv and not errs:
                    if get(url)[0] == 200:
                        print(rv)
                        return 0
                elif errs:
                    print(f"config errors: {errs[:3]}", file=sys.stderr)
                    return 1
        time.sleep(0.1)
    print(f"timed out waiting for {admin} / {url}", file=sys.stderr)
    return 1


def memory_kib(pid):
    """VmRSS, VmHWM and RssFile (the resident pages of mapped files: the binary's code and
    read-only data, the shared libraries) of PID from /proc/PID/status, in KiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssFile"):
                vals[k] = int(v.split()[0])
    return vals["VmRSS"], vals["VmHWM"], vals["RssFile"]


def rss(pid):
    print(*memory_kib(pid))


def stat_fields(pid):
    """The fields of /proc/PID/stat after the parenthesized command (the state first), or
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def with_children(pids):
    """The PIDs and their child processes (nginx's master and its workers)."""
    out = set(pids)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        fields = stat_fields(d)
        # The parent PID is field 4 of the file.
        if fields and int(fields[1]) in pids:
            out.add(int(d))
    return sorted(out)


def open_idle(host, port, n):
    """N connections, each after one keep-alive request answered."""
    conns = []
    request = f"GET /0 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError(f"{host}:{port} closed a connection before answering")
            head += chunk
        conns.append(s)
    return conns


def idle_rss(host, port, n, *pids):
    n, port = int(n), int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 200), hard))
    procs = with_children({int(p) for p in pids})
    # The first connections pay for what is allocated once (per-thread caches, pools); the
    # pause lets memory freed by earlier load go back to the system first (gw-gateway's
    # allocator returns free pages after half a second), so that it is not counted as reused.
    warm = open_idle(host, port, 50)
    time.sleep(2)
    before = sum(memory_kib(p)[0] for p in procs)
    held = open_idle(host, port, n)
    time.sleep(0.5)
    after = sum(memory_kib(p)[0] for p in procs)
    for s in warm + held:
        s.close()
    print(round((after - before) * 1024 / n))


def cpu_seconds(pid):
    """User and system CPU seconds so far of PID and its children (0: none)."""
    pid = int(pid)
    if pid == 0:
        return 0.0, 0.0
    tck = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p in with_children({pid}):
        fields = stat_fields(p)
        # utime and stime are fields 14 and 15 of the file.
        if fields:
            user += int(fields[11])
            system += int(fields[12])
    return user / tck, system / tck


def cpu(pid, backend):
    u, s = cpu_seconds(pid)
    bu, bs = cpu_seconds(backend)
    print(f"{time.time():.6f} {u:.2f} {s:.2f} {bu:.2f} {bs:.2f}")


def cpu_table(path):
    """CPU per request: the CPU time a process used between the two samples, over the
    requests served in that window (req/s times its length; the load is steady by then)."""
    rows = []
    for line in open(path):
        p = line.split()
        if len(p) != 15:
            continue
        body, conns, target, rps = p[1:5]
        a, b = [float(x) for x in p[5:10]], [float(x) for x in p[10:15]]
        n = float(rps) * (b[0] - a[0])
        if not n > 0:
            continue
        per = [(b[i] - a[i]) * 1e6 / n for i in range(1, 5)]
        rows.append((body, conns, target, float(rps), per))
    if not rows:
        return
    print("CPU per request at maximum throughput, HTTP/1.1 (µs; sampled from /proc after the warm-up")
    print("until wrk ends; the process under test with its children; the load generator uses the rest)")
    print("| body | conns | target | req/s | under test: user | sys | backend: user | sys |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for body, conns, target, rps, per in rows:
        u, s = ("", "") if target == "direct" else (f"{per[0]:.2f}", f"{per[1]:.2f}")
        print(f"| {body} | {conns} | {target} | {rps:.0f} | {u} | {s} | {per[2]:.2f} | {per[3]:.2f} |")
    print()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def propagate(admin, base, confdir, stagedir, count, out, mode="new-file"):
    """One-route changes, each timed from the write to the first 200 on its path. Modes:
    new-file: each change adds a file with one new route (renamed into place);
    edit: each change gives route-0 of routes-000000.yaml (500 routes, their Services and
    EndpointSlices) a new path, rewriting that file (written beside it, renamed into place)."""
    host, port = base.split(":")
    conn = [None]

    def status(path):
        for _ in range(3):
            try:
                if conn[0] is None:
                    conn[0] = http.client.HTTPConnection(host, int(port), timeout=2)
                conn[0].request("GET", path)
                r = conn[0].getresponse()
                r.read()
                return r.status
            except Exception:
                conn[0] = None
        return None

    os.makedirs(stagedir, exist_ok=True)
    if mode == "edit":
        with open(os.path.join(confdir, "routes-000000.yaml")) as f:
            original = f.read()
        first = route("route-0", "/r/0", "svc-0", "scale")
        if first not in original:
            print("routes-000000.yaml does not hold route-0 as gen-scale writes it", file=sys.stderr)
            return 1
    times = []
    failures = 0
    tag = str(os.getpid())
    for k in range(int(count)):
        path = f"/prop/{tag}/{k}"
        before = status(path)
        if before != 404:
            print(f"change {k}: expected 404 before the write, got {before}", file=sys.stderr)
            failures += 1
            continue
        if mode == "edit":
            name = "routes-000000.yaml"
            text = original.replace(first, route("route-0", path, "svc-0", "scale", ptype="Exact"), 1)
        else:
            name = f"prop-{tag}-{k}.yaml"
            text = route(f"prop-{tag}-{k}", path, "svc-0", "scale", ptype="Exact")
        staged = os.path.join(stagedir, name)
        with open(staged, "w") as f:
            f.write(text)
        t0 = time.perf_counter()
        os.rename(staged, os.path.join(confdir, name))  # atomic: the watcher sees a complete file
        deadline = t0 + 10.0
        seen = False
        while time.perf_counter() < deadline:
            if status(path) == 200:
                seen = True
                break
            time.sleep(0.0005)  # 0.5 ms poll interval (resolution of the measurement)
        if seen:
            times.append((time.perf_counter() - t0) * 1000.0)
        else:
            failures += 1
            print(f"change {k}: not visible after 10 s", file=sys.stderr)
        time.sleep(0.05)
    s = sorted(times)
    with open(out, "w") as f:
        f.write(" ".join(f"{t:.2f}" for t in times) + "\n")
    if s:
        print(f"{len(s)} {statistics.median(s):.1f} {pct(s, 99):.1f} {s[0]:.1f} {s[-1]:.1f} {failures}")
    else:
        print(f"0 nan nan nan nan {failures}")
    return 0 if failures == 0 else 1


UNIT = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def to_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)$", s.strip())
    return float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")


def parse_wrk(path):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    errs = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errs += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    print(
        f"{float(rps.group(1)) if rps else float('nan'):.0f} "
        f"{to_us(p50.group(1)) if p50 else float('nan'):.0f} "
        f"{to_us(p99.group(1)) if p99 else float('nan'):.0f} {errs}"
    )


def parse_h2load(path, log):
    text = open(path).read()
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    errs = int(m.group(5)) + int(m.group(6)) if m else -1
    m2 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m2:
        errs += int(m2.group(3)) + int(m2.group(4))
    lat = []
    try:
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
    except FileNotFoundError:
        pass
    lat.sort()
    print(
        f"{float(rps.group(1)) if rps else float('nan'):.0f} "
        f"{pct(lat, 50):.0f} {pct(lat, 99):.0f} {errs}"
    )


def fmt_lat(us):
    us = float(us)
    if us != us:
        return "n/a"
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"


def ratio(a, b):
    a, b = float(a), float(b)
    if a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def table(results):
    # lines: kind proto body conns target rps p50 p99 errs
    rows = {}
    fixed = {}
    order = []
    for line in open(results):
        p = line.split()
        if not p:
            continue
        kind, proto, body, conns, target, rps, p50, p99, errs = p
        key = (proto, body, conns)
        d = rows if kind == "max" else fixed
        if key not in d:
            d[key] = {}
            if kind == "max":
                order.append(key)
        d[key][target] = (rps, p50, p99, errs)

    def emit(title, d, keys, rate_label):
        print(title)
        print(
            f"| proto | body | {rate_label} | target | req/s | p50 | p99 | errors | gw/nginx req/s | gw/direct req/s | gw-nginx p99 | gw-direct p99 |"
        )
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in keys:
            t = d[key]
            g = t.get("gw")
            for target in ("gw", "nginx", "direct"):
                if target not in t:
                    continue
                rps, p50, p99, errs = t[target]
                extra = "| | | | |"
                if target == "gw" and g:
                    n = t.get("nginx", ("nan",) * 4)
                    di = t.get("direct", ("nan",) * 4)
                    addn = float(g[2]) - float(n[2])
                    addd = float(g[2]) - float(di[2])
                    extra = f"| {ratio(g[0], n[0])} | {ratio(g[0], di[0])} | {fmt_lat(addn) if addn >= 0 else '-' + fmt_lat(-addn)} | {fmt_lat(addd) if addd >= 0 else '-' + fmt_lat(-addd)} |"
                print(
                    f"| {key[0]} | {key[1]} | {key[2]} | {target} | {float(rps):.0f} | {fmt_lat(p50)} | {fmt_lat(p99)} | {errs} {extra}"
                )
        print()

    emit("Maximum throughput (closed loop: wrk for h1, h2load -m 1 for h2c)", rows, order, "conns")
    if fixed:
        emit("Fixed rate (h2load --rps; the rate column is the offered total req/s)", fixed, list(fixed), "rate")


def bencher(stream):
    """criterion's bencher format: `test GROUP/ID ... bench: 1,234 ns/iter (+/- 56)`."""
    out = {}
    for line in stream:
        m = re.match(r"test (\S+) \.\.\. bench:\s+([\d,]+) ns/iter", line)
        if m:
            out[m.group(1)] = int(m.group(2).replace(",", ""))
    return out


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns} ns"


def routing_table():
    r = bencher(sys.stdin)
    sizes = sorted({int(k.rsplit("/", 1)[1]) for k in r})
    kinds = ["typical", "best", "worst"]
    print("Routing: resolve + request filters per request (criterion median)")
    print("| HTTPRoutes | " + " | ".join(kinds) + " | typical vs 10 routes | worst vs 10 routes |")
    print("|---:|" + "---:|" * (len(kinds) + 2))
    base = {k: r.get(f"resolve_and_filters/{k}/10") for k in kinds}
    for n in sizes:
        cells = [fmt_ns(r[f"resolve_and_filters/{k}/{n}"]) if f"resolve_and_filters/{k}/{n}" in r else "n/a" for k in kinds]
        ratios = []
        for k in ("typical", "worst"):
            v = r.get(f"resolve_and_filters/{k}/{n}")
            ratios.append(f"{v / base[k]:.2f}x" if v and base[k] else "n/a")
        print(f"| {n:,} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()


def compile_table():
    r = bencher(sys.stdin)
    full = {int(k.rsplit("/", 1)[1]): v for k, v in r.items() if k.startswith("compile/")}
    again = {int(k.rsplit("/", 1)[1]): v for k, v in r.items() if k.startswith("recompile/")}
    print("Compile: gw_model::compile, and Compiler::compile after a one-route change (criterion median)")
    print("| HTTPRoutes | compile | one-route change |")
    print("|---:|---:|---:|")
    for n in sorted(set(full) | set(again)):
        a = fmt_ns(full[n]) if n in full else "-"
        b = fmt_ns(again[n]) if n in again else "-"
        print(f"| {n:,} | {a} | {b} |")
    print()


def executed_functions(path, binary, starts, symbols, ran):
    """Adds to `ran` each function symbol of `binary` with an instruction in callgrind output
    `path` (written with `--dump-instr=yes`: positions are instruction addresses, relative to
    the object for a position-independent executable; a call's line is the address of the
    call instruction, in the caller)."""
    names, current, last = {}, None, 0
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                m = re.match(r"c?ob=\((\d+)\)\s*(.*)", line.strip())
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("ob=") and m:
                    current = names.get(m.group(1))
                continue
            if not line[:1] or line[0] not in "0+-*":
                continue
            tok = line.split()[0]
            if tok.startswith("0x"):
                last = int(tok, 16)
            elif tok[0] == "+":
                last += int(tok[1:], 0)
            elif tok[0] == "-":
                last -= int(tok[1:], 0)
            if current and os.path.basename(current) == os.path.basename(binary):
                i = bisect.bisect_right(starts, last) - 1
                if i >= 0 and last < starts[i] + max(symbols[i][1], 1):
                    ran.add(symbols[i][2])


def unhashed(symbol):
    """A Rust legacy symbol's name up to its hash (`17h` + 16 hex digits, a hash of the
    build's crate metadata and, for a generic function, of its type arguments), or None for
    another symbol. LLVM may add a `.N` suffix to a local symbol it renamed."""
    m = re.match(r"^(_ZN.*17h)[0-9a-f]{16}E(\.\d+)?$", symbol)
    return m.group(1) if m else None


def section_patterns(symbol, instances):
    """Input-section patterns for `symbol`'s function section (`.text.NAME`, or
    `.text.unlikely.NAME` for a function LLVM deems cold, such as `#[cold]` ones). A Rust
    function that has one instance in the profiled binary gets a pattern without its hash,
    which still matches when the hash changes; a generic function keeps its hash: without
    it, the pattern would take in every instance. `instances` counts the binary's symbols by
    their name without the hash."""
    base = re.sub(r"\.\d+$", "", symbol)
    prefix = unhashed(symbol)
    if prefix and instances[prefix] == 1:
        names = [f"{prefix}*"]
    elif prefix:
        names = [f"{base}*"]  # only a `.N` suffix can follow the hash's closing `E`
    else:
        names = [base, f"{base}.*"]
    return [f".text.{p}{n}" for p in ("", "unlikely.") for n in names]


def hot_text(binary, out, *profiles):
    symbols = []
    nm = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwW":
            symbols.append((int(f[0], 16), int(f[1], 16), f[3]))
    symbols.sort()
    starts = [s[0] for s in symbols]
    ran = set()
    for p in profiles:
        executed_functions(p, binary, starts, symbols, ran)
    if not ran:
        print(f"hot-text: no code of {binary} in {profiles}", file=sys.stderr)
        return 1
    size = {name: sz for _, sz, name in symbols}
    code = sum(size[n] for n in ran)
    instances = collections.Counter(filter(None, map(unhashed, size)))
    # Sorted by name, for diffs that show what changed: within one input-section list the
    # linker keeps the order of the input, whatever the order of the patterns.
    patterns = sorted({p for name in ran for p in section_patterns(name, instances)})
    with open(out, "w") as f:
        f.write(HOT_TEXT_HEADER.format(functions=len(ran), kib=code // 1024))
        f.write("SECTIONS\n{\n  .text.hot : {\n    *(\n")
        for p in patterns:
            f.write(f"      {p}\n")
        f.write("    )\n  }\n}\nINSERT BEFORE .text;\n")
    print(f"hot-text: {len(ran)} functions, {code} bytes, {len(patterns)} patterns -> {out}")
    return 0


HOT_TEXT_HEADER = """/* The code gw-gateway runs, placed together ahead of the rest of .text.
 *
 * Generated by benches/load/hot-text.sh (do not edit): the functions a release build
 * executed under callgrind while it loaded 5,000 HTTPRoutes and the built-in demo, served
 * HTTP/1.1 and h2c requests and reloaded changed routes: {functions} functions ({kib} KiB).
 * The kernel maps a binary's code 64 KiB at a time around each page a
 * process touches, so code that runs spread over the whole .text keeps most of it resident;
 * gathered, it keeps about what it uses (benches/README.md).
 *
 * A pattern that matches nothing changes nothing: a function added or renamed since the
 * profile just stays in .text. examples/gateway/build.rs passes this script to the linker
 * (INSERT keeps the linker's default layout for everything else).
 */
"""


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gen-base":
        gen_base(*args)
    elif cmd == "gen-scale":
        gen_scale(args[0], args[1], int(args[2]))
    elif cmd == "wait-ready":
        return wait_ready(*args)
    elif cmd == "rss":
        rss(*args)
    elif cmd == "idle-rss":
        idle_rss(*args)
    elif cmd == "propagate":
        return propagate(*args)
    elif cmd == "edit-loop":
        return edit_loop(*args)
    elif cmd == "parse-wrk":
        parse_wrk(*args)
    elif cmd == "parse-h2load":
        parse_h2load(*args)
    elif cmd == "table":
        table(*args)
    elif cmd == "cpu":
        cpu(*args)
    elif cmd == "cpu-table":
        cpu_table(*args)
    elif cmd == "routing-table":
        routing_table()
    elif cmd == "compile-table":
        compile_table()
    elif cmd == "hot-text":
        return hot_text(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main() or 0)
