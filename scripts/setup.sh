#!/usr/bin/env bash
# Create .venv (if needed) and install hsrl into it.
#   bash scripts/setup.sh          # the package, for running the pipeline
#   bash scripts/setup.sh --dev    # plus test, lint and plotting tools
# A CPU build of PyTorch is installed first when the environment has no torch; set
# HSRL_TORCH_SPEC (for example "torch==2.13.0" or "torch>=2.3") to choose another.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
py=.venv/bin/python
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  "$py" -m pip install -q "${HSRL_TORCH_SPEC:-torch==2.13.0}"
fi
"$py" -m pip install -q -e ".${extras}"
echo "hsrl installed in .venv (activate with: source .venv/bin/activate)"
