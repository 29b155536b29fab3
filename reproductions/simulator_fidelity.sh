#!/usr/bin/env bash
# Simulator fidelity on the main job's world, one dataset seed per call (docs/simulator.md,
# "Fidelity on the main job's world"). Usage: bash reproductions/simulator_fidelity.sh SEED [OUT]
# Extra variables: USERS (30000), EXPLORE (20), VARIANT (ml1m), FDIM (32), EPOCHS (5),
# POSITION (auto). Writes OUT/seedS/{data,simulator,fidelity}; prints the fidelity JSON's path.
set -euo pipefail
seed=${1:?usage: simulator_fidelity.sh SEED [OUT]}
out=${2:-outputs/fidelity}/seed$seed
hsrl=${HSRL:-hsrl}
mkdir -p "$out"
[ -f "$out/data/manifest.json" ] || $hsrl --threads 1 data prepare builtin --out "$out/data" \
  --seed "$seed" --option num_users="${USERS:-30000}" --option explore_percent="${EXPLORE:-20}"
[ -f "$out/simulator/metrics.json" ] || $hsrl --threads 1 simulator train --data "$out/data" \
  --out "$out/simulator" --seed "$seed" --variant "${VARIANT:-ml1m}" \
  --feature-dim "${FDIM:-32}" --epochs "${EPOCHS:-5}" --position "${POSITION:-auto}" --no-progress
$hsrl --threads 1 simulator fidelity "$out/simulator" --data "$out/data" --out "$out/fidelity" \
  --episodes 1000 --seed 0 > /dev/null
echo "$out/fidelity/fidelity.json"
