#!/usr/bin/env python3
"""Joins `groupwise bench slates` and bench/peers_slates.py rows (JSON lines)
into the Markdown table of BENCHMARKS.md: per candidate count and policy,
groupwise's decisions/s and latency next to each Python peer's, with the
speed ratio.

    python3 bench/report_slates.py bench/out/slates.jsonl
"""
import json
import sys


def main():
    rows = [json.loads(line) for path in sys.argv[1:] for line in open(path) if line.startswith("{")]
    ours = {(r["candidates"], r["policy"], r["threads"]): r for r in rows
            if r.get("bench") == "slates" and r["impl"] == "groupwise"}
    peers = [r for r in rows if r.get("bench") == "slates" and r["impl"] != "groupwise"]
    print("| candidates | policy | groupwise 1 thread: decisions/s, p50 / p99 µs | groupwise 2 threads: decisions/s | peer | peer: decisions/s, p50 / p99 µs | speed ratio (1 thread) |")
    print("|---:|---|---|---:|---|---|---:|")
    for p in sorted(peers, key=lambda r: (r["candidates"], r["policy"], r["impl"])):
        o1 = ours.get((p["candidates"], p["policy"], 1))
        o2 = ours.get((p["candidates"], p["policy"], 2))
        if o1 is None:
            continue
        two = f"{o2['decisions_per_s']:,.0f}" if o2 else "-"
        print(f"| {p['candidates']:,} | {p['policy']} "
              f"| {o1['decisions_per_s']:,.0f}, {o1['p50_us']:.0f} / {o1['p99_us']:.0f} | {two} "
              f"| {p['impl']} | {p['decisions_per_s']:,.0f}, {p['p50_us']:.0f} / {p['p99_us']:.0f} "
              f"| {o1['decisions_per_s'] / p['decisions_per_s']:.1f}x |")
    fb = [r for r in rows if r.get("bench") == "slates-feedback"]
    if fb:
        print("\nFeedback events per second while another thread decides (groupwise): "
              + ", ".join(f"{r['candidates']:,} candidates: {r['feedback_per_s']:,.0f}" for r in fb))
    pf = [r for r in peers if "feedback_per_s" in r]
    if pf:
        print("\nPeers' feedback (K updates per event, single thread, no concurrent decisions): "
              + ", ".join(f"{r['impl']} at {r['candidates']:,}: {r['feedback_per_s'] / r['slate']:,.0f} events/s" for r in pf))


if __name__ == "__main__":
    main()
