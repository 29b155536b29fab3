#!/usr/bin/env bash
# The main job's world for agent grids in WORLD (data/, simulator/, sid/), dataset seed SEED,
# and the reference policies' scores in WORLD/reference.jsonl.
# Usage: bash reproductions/grid_world.sh WORLD [SEED] [DEVICE]
set -euo pipefail
w=${1:?usage: grid_world.sh WORLD [SEED] [DEVICE]}; seed=${2:-0}; device=${3:-cpu}
hsrl=${HSRL:-hsrl}
[ -f "$w/data/manifest.json" ] || $hsrl data prepare builtin --out "$w/data" --seed "$seed" \
  --option num_users=30000 --option explore_percent=20 > /dev/null
[ -f "$w/simulator/metrics.json" ] || $hsrl simulator train --data "$w/data" \
  --out "$w/simulator" --seed "$seed" --variant ml1m --feature-dim 32 --epochs 5 \
  --position auto --device "$device" --no-progress > /dev/null
[ -f "$w/sid/report.json" ] || $hsrl sid build --data "$w/data" --out "$w/sid" --levels 3 \
  --codes 16 --seed "$seed" > /dev/null
if [ ! -f "$w/reference.jsonl" ]; then
  for policy in random greedy oracle; do
    for where in "--simulator $w/simulator" --ground-truth; do
      # shellcheck disable=SC2086
      $hsrl --threads 1 evaluate --policy $policy --data "$w/data" $where --json \
        >> "$w/reference.jsonl" &
    done
  done
  wait
fi
