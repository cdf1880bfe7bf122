#!/usr/bin/env bash
# First-connection latency, cold vs warm, as recorded in BENCHMARKS.md.
# Usage: benches/first-connection.sh cold|warm RUN   (after `cargo build --release --bins`)
set -euo pipefail
mode=$1; run=$2
data=$(mktemp -d)
case $mode in
  cold) keep=none ;;
  warm) keep=all ;;
esac
target/release/zonemesh dev --listen 127.0.0.1:0 --data "$data" --keep-warm $keep --store-latency-ms 2000 > "$data/out.txt" 2>/dev/null &
pid=$!
for i in $(seq 1 100); do grep -q "listening on" "$data/out.txt" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o "listening on [0-9.:]*" "$data/out.txt" | awk '{print $3}')
if [ "$mode" = warm ]; then sleep 5; fi   # let the preload (16 zones, 2 s each, 8 at a time) finish
target/release/zonemesh-swarm --server "$addr" --dev-data "$data" --bots 100 --duration 12 --connect-timeout 30 --json "target/firstconn-$mode-$run.json" > /dev/null 2>&1 || true
kill -TERM $pid; wait $pid || true
python3 -c "
import json; r=json.load(open('target/firstconn-$mode-$run.json'))
c=r['connect_ms']; print('$mode', $run, 'connected', r['bots_connected'], 'p50 %.0f p90 %.0f p99 %.0f max %.0f' % (c['p50'],c['p90'],c['p99'],c['max']))"
rm -rf "$data"
