#!/usr/bin/env python3
"""Throughput against latency for raftchat and its peers, as an SVG (standard library only).

    examples/plot_throughput.py OUT_DIR [SVG]

Reads OUT_DIR/raftchat.json (loadgen's `--json`) and OUT_DIR/peers.jsonl (the anchors'
ANCHORS_RESULTS), as examples/compare_peers.sh leaves them, and writes SVG (default
OUT_DIR/throughput_latency.svg): acknowledged sends per second (x, log) against ack latency
p99 (y, log), one line per system through its 1 / 64 / 256 in-flight points.
"""
import json
import math
import sys

out = sys.argv[1]
svg_path = sys.argv[2] if len(sys.argv) > 2 else f"{out}/throughput_latency.svg"

series = []  # (label, colour, [(conc, rate, p99_ms)])
for name, label, colour in [
    ("raftchat.json", "raftchat, 3 groups, the default (fsync on quorum, WebSocket)", "#d62728"),
    ("raftchat-g1.json", "raftchat, 1 group (fsync on quorum, WebSocket)", "#ff7f0e"),
]:
    try:
        rows = json.load(open(f"{out}/{name}"))["rows"]
    except FileNotFoundError:
        continue
    pts = [(int(r["phase"].split("=")[1]), r["ackedPerSec"], r["ackP99Ms"])
           for r in rows if r["phase"].startswith("in-flight=") and r.get("ackP99Ms") is not None]
    series.append((label, colour, sorted(pts)))

peers = [json.loads(line) for line in open(f"{out}/peers.jsonl") if line.strip()]
for system, mode, label, colour in [
    ("nats-jetstream", "pub/rust-client", "NATS JetStream R3 (no fsync)", "#1f77b4"),
    ("etcd", "put/rust-client", "etcd 3.4 (fsync)", "#2ca02c"),
]:
    by_conc = {}
    for p in peers:
        if p["system"] == system and p["mode"] == mode and p.get("p99_ms"):
            by_conc[p["conc"]] = (p["conc"], p["rate"], p["p99_ms"])  # last run wins
    if by_conc:
        series.append((label, colour, sorted(by_conc.values())))

W, H, L, R, T, B = 740, 460, 70, 44, 40, 60
all_pts = [p for _, _, ps in series for p in ps]
if not all_pts:
    sys.exit("no points to plot")
x_lo = 10 ** math.floor(math.log10(min(p[1] for p in all_pts)))
x_hi = 10 ** math.ceil(math.log10(max(p[1] for p in all_pts)))
y_lo = 10 ** math.floor(math.log10(min(p[2] for p in all_pts)))
y_hi = 10 ** math.ceil(math.log10(max(p[2] for p in all_pts)))


def sx(v):
    return L + (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo)) * (W - L - R)


def sy(v):
    return H - B - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * (H - T - B)


def decades(lo, hi):
    v = lo
    while v <= hi * 1.0001:
        yield v
        v *= 10


parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">Acked sends/s against ack p99 '
         '(200-byte messages, 1,000 chats; labels: in flight)</text>']
for v in decades(x_lo, x_hi):
    x = sx(v)
    parts.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
    parts.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{v:,.0f}</text>')
for v in decades(y_lo, y_hi):
    y = sy(v)
    parts.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
    parts.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">acknowledged sends per second (log)</text>')
parts.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(T + H - B) / 2})">ack latency p99, ms (log)</text>')
for i, (label, colour, ps) in enumerate(series):
    path = " ".join(f"{sx(r):.1f},{sy(p):.1f}" for _, r, p in ps)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for conc, r, p in ps:
        parts.append(f'<circle cx="{sx(r):.1f}" cy="{sy(p):.1f}" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{sx(r) + 6:.1f}" y="{sy(p) - 6:.1f}" fill="{colour}">{conc}</text>')
    ly = T + 14 + 18 * i
    parts.append(f'<line x1="{L + 12}" y1="{ly - 4}" x2="{L + 36}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
    parts.append(f'<text x="{L + 42}" y="{ly}">{label}</text>')
parts.append("</svg>")
with open(svg_path, "w") as f:
    f.write("\n".join(parts) + "\n")
print(f"wrote {svg_path}")
