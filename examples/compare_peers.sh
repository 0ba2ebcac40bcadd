#!/usr/bin/env bash
# raftchat's `throughput` scenario and the peers of shared/anchors (NATS JetStream R3, etcd),
# measured in one run on this machine, each figure with the ratio raftchat / peer.
#
#   examples/compare_peers.sh [ANCHORS_DIR]      (default: ../shared/anchors next to the repo)
#
# Environment: OUT (results directory, default /tmp/raftchat-compare), SECS (measured seconds
# per phase, default 8, as the anchors' PHASE_SECS). Every process is bounded in time: the
# anchors stop their servers on exit, and loadgen stops its cluster.
#
# Durability of an ack: raftchat and etcd fsync on a quorum before they acknowledge; NATS
# JetStream 2.9 does not (its file store syncs every 60 s), so it is an upper anchor.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
anchors="${1:-$(cd "$here/.." && pwd)/shared/anchors}"
out="${OUT:-/tmp/raftchat-compare}"
secs="${SECS:-8}"
mkdir -p "$out"
rm -f "$out/peers.jsonl"
test -x "$anchors/nats_jetstream.sh" || { echo "no anchors at $anchors" >&2; exit 2; }

cd "$here"
cargo build --release --bin raftchat
# The default layout (3 data groups, one leader per node), then one group, the shape of a single
# NATS stream or the one etcd Raft group.
timeout 900 cargo run --release -p raftchat-tests --example loadgen -- \
    --secs "$secs" --json "$out/raftchat.json" throughput --in-flight 1,64,256
timeout 900 cargo run --release -p raftchat-tests --example loadgen -- \
    --data-groups 1 --secs "$secs" --json "$out/raftchat-g1.json" throughput --in-flight 1,64,256

export ANCHORS_RESULTS="$out/peers.jsonl" PHASE_SECS="$secs"
timeout 900 "$anchors/nats_jetstream.sh" >"$out/nats.log" 2>&1 || echo "nats_jetstream.sh failed: see $out/nats.log" >&2
timeout 900 "$anchors/etcd.sh" >"$out/etcd.log" 2>&1 || echo "etcd.sh failed: see $out/etcd.log" >&2

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def load(name):
    try:
        return {int(r["phase"].split("=")[1]): r for r in json.load(open(f"{out}/{name}"))["rows"]}
    except FileNotFoundError:
        return {}
ours, ours_g1 = load("raftchat.json"), load("raftchat-g1.json")
peers = [json.loads(l) for l in open(f"{out}/peers.jsonl") if l.strip()]
def peer(system, mode, conc):
    rs = [r for r in peers if r["system"] == system and r["mode"] == mode and r["conc"] == conc]
    return rs[-1] if rs else None
f = lambda v: "-" if v is None else f"{v:.2f}"
print("raftchat: 3 data groups (the default); in brackets: 1 data group")
print(f"{'conc':>5} {'raftchat acks/s':>16} {'p99 ms':>8} | {'peer':<34} {'acks/s':>9} {'p99 ms':>8} {'ratio':>7}")
for conc in sorted(ours):
    r = ours[conc]
    g1 = ours_g1.get(conc)
    if g1:
        print(f"{conc:>5} {'[' + format(g1['ackedPerSec'], '.0f') + ']':>16} {'[' + f(g1['ackP99Ms']) + ']':>8} |")
    for system, mode in [("nats-jetstream", "pub/rust-client"), ("etcd", "put/rust-client"),
                         ("nats-jetstream", "pub"), ("etcd", "put")]:
        p = peer(system, mode, conc)
        if p is None:
            continue
        ratio = r["ackedPerSec"] / p["rate"] if p["rate"] else float("nan")
        print(f"{conc:>5} {r['ackedPerSec']:>16.0f} {f(r['ackP99Ms']):>8} | {system + ' ' + mode:<34} "
              f"{p['rate']:>9.0f} {f(p.get('p99_ms')):>8} {ratio:>6.2f}x")
print("\ne2e delivery p99 (ms): raftchat " + ", ".join(f"{c}: {f(ours[c]['e2eP99Ms'])}" for c in sorted(ours)))
if ours_g1:
    print("  raftchat, 1 data group: " + ", ".join(f"{c}: {f(ours_g1[c]['e2eP99Ms'])}" for c in sorted(ours_g1)))
for system, mode in [("nats-jetstream", "e2e/rust-client"), ("etcd", "e2e/rust-client")]:
    rs = [p for p in peers if p["system"] == system and p["mode"] == mode]
    if rs:
        print(f"  {system} {mode}: " + ", ".join(f"{p['conc']}: {f(p.get('e2e_p99_ms'))}" for p in rs))
print("\ndurability: raftchat and etcd fsync on a quorum before acking; NATS JetStream 2.9 does not.")
PY

python3 "$here/examples/plot_throughput.py" "$out"
