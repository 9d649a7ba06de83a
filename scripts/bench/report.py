"""Aggregates scripts/bench.sh measurements: medians over runs, ratios, targets.

Usage: report.py RESULTS.jsonl MODE OUT.json
"""

import json
import statistics
import sys
from collections import defaultdict


def main(path: str, mode: str, out_path: str) -> None:
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            runs[rec["name"]].append(rec["data"])

    def med(name, key):
        vals = [r[key] for r in runs.get(name, []) if key in r]
        return statistics.median(vals) if vals else None

    def errors(name):
        return sum(r.get("errors", 0) for r in runs.get(name, []))

    floor = runs["floor"][0]
    per_handshake_us = 1e6 / floor["derive_per_s"] + 1e6 / floor["sign_per_s"] + 2e6 / floor["verify_per_s"]
    floor_rate = 1e6 / per_handshake_us

    concs = sorted({int(n.split("c=")[1].split()[0]) for n in runs if " c=" in n and "revoked" not in n})
    rows = []
    summary = {"mode": mode, "floor_handshakes_per_core": floor_rate, "floor": floor, "rows": {}}
    for kind in ("handshake", "calls"):
        for c in concs:
            m = med(f"mcp-zt {kind} c={c}", "ops_per_server_cpu_sec")
            n = med(f"nginx {kind} c={c}", "ops_per_server_cpu_sec")
            t = med(f"ts-sdk {kind} c={c}", "ops_per_server_cpu_sec")
            key = f"{kind} c={c}"
            summary["rows"][key] = {
                "mcp_zt": m, "nginx": n, "ts_sdk": t,
                "errors": {"mcp_zt": errors(f"mcp-zt {kind} c={c}"), "nginx": errors(f"nginx {kind} c={c}"),
                           "ts_sdk": errors(f"ts-sdk {kind} c={c}")},
                "mcp_zt_p50_ms": med(f"mcp-zt {kind} c={c}", "p50_ms"),
                "mcp_zt_p99_ms": med(f"mcp-zt {kind} c={c}", "p99_ms"),
            }
            rows.append((key, m, n, t))

    def fmt(v, nd=0):
        return "-" if v is None else f"{v:,.{nd}f}"

    def ratio(a, b):
        return "-" if not a or not b else f"{a / b:.2f}x"

    print(f"\nmcp-zt benchmark ({mode}); rates are operations per CPU-second of the server process")
    print(f"physical floor (openssl speed): {floor_rate:,.0f} full mTLS handshakes per core\n")
    print(f"| {'measurement':<16} | {'mcp-zt':>9} | {'nginx':>9} | {'TS SDK':>9} | {'÷ nginx':>8} | {'÷ TS SDK':>8} |")
    print(f"|{'-'*18}|{'-'*11}|{'-'*11}|{'-'*11}|{'-'*10}|{'-'*10}|")
    for key, m, n, t in rows:
        label = key.replace("handshake", "handshakes").replace("calls", "tools/call")
        print(f"| {label:<16} | {fmt(m):>9} | {fmt(n):>9} | {fmt(t):>9} | {ratio(m, n):>8} | {ratio(m, t):>8} |")

    big = max((int(n.split("revoked=")[1]) for n in runs if "revoked=" in n), default=0)
    h0 = med("mcp-zt handshake c=16 revoked=0", "ops_per_server_cpu_sec")
    h1k = med("mcp-zt handshake c=16", "ops_per_server_cpu_sec")
    hbig = med(f"mcp-zt handshake c=16 revoked={big}", "ops_per_server_cpu_sec")
    rev = runs.get("revocation propagation", [{}])[0]
    idle = runs.get("idle connections", [{}])[0]
    kib_per_conn = (idle["rss_after_kib"] - idle["rss_before_kib"]) / idle["open"] if idle.get("open") else None
    startup = med(f"startup with {big} records", "ms")
    issue_with = runs.get("issue with server", [{}])[0].get("ms_each")
    issue_without = runs.get("issue without server", [{}])[0].get("ms_each")
    calls16 = summary["rows"].get("calls c=16", {})
    best_hs = max((summary["rows"][f"handshake c={c}"]["mcp_zt"] or 0) for c in concs)
    best_nginx = max((summary["rows"][f"handshake c={c}"]["nginx"] or 0) for c in concs)
    best_calls = max((summary["rows"][f"calls c={c}"]["mcp_zt"] or 0) for c in concs)
    best_ts_calls = max((summary["rows"][f"calls c={c}"]["ts_sdk"] or 0) for c in concs)

    print("\n| other measurement | value |")
    print("|---|---|")
    print(f"| handshakes/core, 0 / 1,000 / {big:,} revoked (c=16) | {fmt(h0)} / {fmt(h1k)} / {fmt(hbig)} |")
    print(f"| tools/call latency at c=16, p50 / p99 | {fmt(calls16.get('mcp_zt_p50_ms'), 3)} ms / {fmt(calls16.get('mcp_zt_p99_ms'), 3)} ms |")
    print(f"| revocation propagation ({rev.get('ok', 0)} of {rev.get('trials', 0)} trials ok), p50 / p99 | {fmt(rev.get('p50_ms'), 1)} ms / {fmt(rev.get('p99_ms'), 1)} ms |")
    print(f"| `issue` end to end, without / with the server | {fmt(issue_without)} ms / {fmt(issue_with)} ms |")
    print(f"| server RSS per idle mTLS connection ({idle.get('open', 0)} open) | {fmt(kib_per_conn, 1)} KiB |")
    print(f"| startup with {big:,} ledger records (median) | {fmt(startup)} ms |")

    targets = [
        ("full mTLS handshakes >= 3x nginx (best concurrency)", best_hs and best_nginx and best_hs >= 3 * best_nginx,
         ratio(best_hs, best_nginx)),
        ("handshakes >= 60% of the openssl-speed floor", best_hs >= 0.6 * floor_rate, f"{100 * best_hs / floor_rate:.0f}%"),
        (f"handshake cost with {big:,} revoked within 5% of 0 revoked",
         bool(h0 and hbig and hbig >= 0.95 * h0), "-" if not (h0 and hbig) else f"{100 * (hbig / h0 - 1):+.1f}%"),
        ("tools/call >= 3x TypeScript SDK (best concurrency)", bool(best_ts_calls and best_calls >= 3 * best_ts_calls),
         ratio(best_calls, best_ts_calls)),
        ("tools/call p99 at c=16 <= 2 ms", bool(calls16.get("mcp_zt_p99_ms") is not None and calls16["mcp_zt_p99_ms"] <= 2),
         f"{fmt(calls16.get('mcp_zt_p99_ms'), 3)} ms"),
        ("revocation propagation p99 <= 100 ms", bool(rev.get("p99_ms") is not None and rev.get("ok") and rev["p99_ms"] <= 100),
         f"{fmt(rev.get('p99_ms'), 1)} ms"),
        ("<= 64 KiB per idle connection", bool(kib_per_conn is not None and kib_per_conn <= 64), f"{fmt(kib_per_conn, 1)} KiB"),
        (f"startup with {big:,} records <= 1 s", bool(startup is not None and startup <= 1000), f"{fmt(startup)} ms"),
    ]
    print("\n| target | result | met |")
    print("|---|---|---|")
    for name, ok, val in targets:
        print(f"| {name} | {val} | {'yes' if ok else 'NO'} |")

    summary.update({
        "revoked_handshakes": {"0": h0, "1000": h1k, str(big): hbig},
        "revocation_propagation": rev, "idle": idle, "kib_per_idle_connection": kib_per_conn,
        "startup_ms": startup, "issue_ms": {"without_server": issue_without, "with_server": issue_with},
        "targets": [{"target": n, "met": bool(ok), "value": v} for n, ok, v in targets],
    })
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\nJSON: {out_path}")
    bad = [n for n, rows in runs.items() if any(r.get("errors", 0) for r in rows) and "revocation" not in n]
    if bad:
        print(f"note: errors in {', '.join(bad)}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
