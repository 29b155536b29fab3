#!/usr/bin/env bash
# Run a grid file of agent cells in parallel (docs/hsrl.md, "Ablations"): one line per cell,
# NAME|AGENT|SEED|JSON overrides; each cell is reproductions/agent_grid.py on WORLD.
# Usage: bash reproductions/grid_run.sh WORLD GRID_FILE PARALLEL [ITERS] >> results.jsonl
set -euo pipefail
world=${1:?usage: grid_run.sh WORLD GRID_FILE PARALLEL [ITERS]}; grid=${2:?}; parallel=${3:?}
iters=${4:-3000}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python}
grep -v '^#' "$grid" | grep -v '^$' | tr '\n' '\0' | xargs -0 -P "$parallel" -I{} bash -c '
  IFS="|" read -r name agent seed json <<< "$1"
  "$2" "$3/agent_grid.py" "$4" "$name" "$agent" "$seed" "$json" "$5"
' _ {} "$python" "$here" "$world" "$iters"
