#!/usr/bin/env bash
# How the simulator's fidelity grows with the logged data (docs/simulator.md, "How much data").
# Usage: bash reproductions/simulator_scale.sh OUT DEVICE USERS... ; one JSON line per cell on
# stdout (reproductions/simulator_grid.py), datasets under OUT/u<USERS>. Extra variables: SEED (0),
# EXPLORE (20), CELLS (JSON settings, one per line; default: the main job's simulator).
set -euo pipefail
out=${1:?usage: simulator_scale.sh OUT DEVICE USERS...}; device=${2:?}; shift 2
hsrl=${HSRL:-hsrl}
python=${PYTHON:-python}
cells=${CELLS:-'{"epochs": 5, "model": {"variant": "ml1m", "feature_dim": 32}}'}
here=$(dirname "$0")
for users in "$@"; do
  data=$out/u$users
  [ -f "$data/manifest.json" ] || $hsrl data prepare builtin --out "$data" --seed "${SEED:-0}" \
    --option num_users="$users" --option explore_percent="${EXPLORE:-20}" > /dev/null
  i=0
  while IFS= read -r cell; do
    [ -n "$cell" ] || continue
    i=$((i + 1))
    $python "$here/simulator_grid.py" "$data" "$out/sim_u${users}_$i" "$cell" "$device"
  done <<< "$cells"
done
