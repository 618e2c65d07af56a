#!/usr/bin/env python3
"""Turns the raw wrk/hey outputs of bench/run.sh into the markdown table of BENCHMARKS.md.

Each scenario ran several interleaved rounds; the table shows the median round.
`report.py --max-rps FILE` prints the median requests/s of one wrk output (used for scenario 5).
"""
import os
import re
import statistics
import sys

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_rounds(path):
    if not os.path.exists(path):
        return []
    rounds = []
    for chunk in open(path).read().split("----"):
        rps = re.search(r"Requests/sec:\s+([\d.]+)", chunk)
        if not rps:
            continue
        lat = {}
        for pct, val, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", chunk, re.M):
            lat[pct] = float(val) * UNITS[unit]
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", chunk)
        total = re.search(r"(\d+) requests in", chunk)
        rounds.append({
            "rps": float(rps.group(1)),
            "p50": lat.get("50"),
            "p99": lat.get("99"),
            "errors": int(non2xx.group(1)) if non2xx else 0,
            "total": int(total.group(1)) if total else 0,
        })
    return rounds


def median_round(rounds):
    if not rounds:
        return None
    ordered = sorted(rounds, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


def hey_latency(path):
    """Median over rounds of hey's 50% and 99% latency (ms)."""
    if not os.path.exists(path):
        return None, None
    text = open(path).read()
    p50 = [float(x) * 1e3 for x in re.findall(r"50%+ in ([\d.]+) secs", text)]
    p99 = [float(x) * 1e3 for x in re.findall(r"99%+ in ([\d.]+) secs", text)]
    return (statistics.median(p50) if p50 else None, statistics.median(p99) if p99 else None)


def fmt_ms(v):
    return "–" if v is None else f"{v:.2f} ms"


def ratio(a, b):
    if not a or not b:
        return "–"
    return f"{a['rps'] / b['rps']:.2f}×"


def main(out):
    def load(name):
        return median_round(wrk_rounds(os.path.join(out, name + ".txt")))

    rows = []
    direct, nginx = load("get-direct"), load("get-nginx")
    for label, name in [
        ("1. GET, JWT (cached) + Redis rate limit", "get-gateway-rl"),
        ("2. GET, JWT (cached), rate limit off", "get-gateway-norl"),
        ("floor: axum + reqwest, no policy", "get-floor-reqwest"),
        ("floor: axum + hyper client, no policy", "get-floor-hyper"),
        ("nginx proxy_pass (keep-alive)", "get-nginx"),
        ("direct to upstream", "get-direct"),
    ]:
        r = load(name)
        if r:
            rows.append((label, r, ratio(r, direct), ratio(r, nginx)))
    pdirect, pnginx = load("post-direct"), load("post-nginx")
    for label, name in [
        ("3. POST create, fresh Idempotency-Key", "post-gateway-idem"),
        ("POST via nginx", "post-nginx"),
        ("POST direct to upstream", "post-direct"),
    ]:
        r = load(name)
        if r:
            rows.append((label, r, ratio(r, pdirect), ratio(r, pnginx)))

    print("| scenario | requests/s | p50 | p99 | non-2xx | vs direct | vs nginx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r, vd, vn in rows:
        print(f"| {label} | {r['rps']:.0f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {r['errors']} | {vd} | {vn} |")

    join = median_round(wrk_rounds(os.path.join(out, "queue-join.txt")))
    status = load("queue-status")
    size = read(out, "queue-size.txt")
    per_person = read(out, "queue-bytes-per-person.txt")
    if join or status:
        print()
        print(f"4. Waiting room with {size} waiting in one event:")
        print()
        print("| call | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        if join:
            print(f"| join (median fill round) | {join['rps']:.0f} | {fmt_ms(join['p50'])} | {fmt_ms(join['p99'])} | {join['errors']} |")
        if status:
            print(f"| status, random tokens, saturated (64 connections) | {status['rps']:.0f} | {fmt_ms(status['p50'])} | {fmt_ms(status['p99'])} | {status['errors']} |")
        fixed = load("queue-status-fixed")
        if fixed:
            target = read(out, "queue-status-fixed-rate.txt")
            print(f"| status, random tokens, fixed rate (target {target} req/s, 16 connections) | {fixed['rps']:.0f} | {fmt_ms(fixed['p50'])} | {fmt_ms(fixed['p99'])} | {fixed['errors']} |")
        print()
        print(f"Redis memory per waiting person: {per_person} bytes (used_memory delta / waiting count).")

    rate = read(out, "fixed-rate.txt")
    pd, pg = load("paced-direct"), load("paced-gateway")
    d50, d99 = hey_latency(os.path.join(out, "fixed-direct.txt"))
    g50, g99 = hey_latency(os.path.join(out, "fixed-gateway.txt"))
    if pd or d50 is not None:
        print()
        print(f"5. Fixed rate, GET, target {rate} req/s (half of scenario 1's max):")
        print()
        print("| load | target | requests/s | p50 | p99 |")
        print("| --- | --- | ---: | ---: | ---: |")
        if pd and pg:
            print(f"| paced (wrk, 2 ms between requests per connection) | direct | {pd['rps']:.0f} | {fmt_ms(pd['p50'])} | {fmt_ms(pd['p99'])} |")
            print(f"| paced | gateway (scenario 1 setup) | {pg['rps']:.0f} | {fmt_ms(pg['p50'])} | {fmt_ms(pg['p99'])} |")
            print(f"| paced | **added by the gateway** | | {fmt_ms(pg['p50'] - pd['p50'])} | {fmt_ms(pg['p99'] - pd['p99'])} |")
        if d50 is not None and g50 is not None:
            print(f"| bursty (hey, 50 workers in step) | direct | {rate} | {fmt_ms(d50)} | {fmt_ms(d99)} |")
            print(f"| bursty | gateway (scenario 1 setup) | {rate} | {fmt_ms(g50)} | {fmt_ms(g99)} |")
            print(f"| bursty | **added by the gateway** | | {fmt_ms(g50 - d50)} | {fmt_ms(g99 - d99)} |")

    rss = read(out, "gateway-peak-rss-kb.txt")
    if rss:
        print()
        print(f"Gateway peak RSS during scenarios 1–3: {int(rss) / 1024:.1f} MiB.")


def read(out, name):
    p = os.path.join(out, name)
    return open(p).read().strip() if os.path.exists(p) else ""


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--max-rps":
        r = median_round(wrk_rounds(sys.argv[2]))
        print(int(r["rps"]) if r else 1000)
    else:
        main(sys.argv[1])
