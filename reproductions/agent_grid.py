"""One cell of an agent grid (docs/hsrl.md, reproductions/README.md): train one agent with the
builtin preset plus overrides, evaluate it greedily on the learned simulator and on the true
users (1,000 test users, evaluation seed 0), and print one JSON line.

    python reproductions/agent_grid.py WORLD NAME AGENT SEED '{"agent_config": {...}}' [ITERS]

WORLD holds data/, simulator/ and sid/ (as the main job writes them); the run goes to
WORLD/grid/NAME_AGENT_seedSEED and is reused when it exists. With "ground_truth": true in the
overrides' "env", the agent trains on the true users instead of the simulator.

Every cell starts from the builtin preset's loop and env with the agent settings of GRID_BASE
(for HSRL: the method as specified, with the preset's entropy 0.01), so a cell means the same
whatever the preset's agent defaults are now.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from hsrl.evaluate import EvalSettings, evaluate_run
from hsrl.presets import merge, preset
from hsrl.train import config_from_dict, train

GRID_BASE = {"hsrl": {"entropy_coef": 0.01}, "a2c_flat": {"entropy_coef": 0.01}}


def main(world: str, name: str, agent: str, seed: str, overrides: str, iters: str = "3000"):
    torch.set_num_threads(1)
    root = Path(world).resolve()
    run_dir = root / "grid" / f"{name}_{agent}_seed{seed}"
    base = preset("builtin")
    if agent in GRID_BASE:
        base["agent_config"] = dict(GRID_BASE[agent])
    values = merge(
        base,
        {
            "agent": agent,
            "data": str(root / "data"),
            "simulator": str(root / "simulator"),
            "sid": str(root / "sid"),
            "seed": int(seed),
            "train": {"iterations": int(iters), "tensorboard": False},
        },
    )
    values = merge(values, json.loads(overrides))
    start = time.perf_counter()
    if not (run_dir / "checkpoints" / "last.pt").exists():
        train(config_from_dict(values), run_dir, overwrite=True, progress=False)
    train_s = time.perf_counter() - start
    settings = EvalSettings(episodes=1000, seed=0)
    scores = {}
    for where, truth in (("sim", False), ("truth", True)):
        result = evaluate_run(run_dir, settings, ground_truth=truth, simulator=root / "simulator")
        scores[where] = round(result["metrics"]["total_reward"]["mean"], 4)
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    line = {
        "name": name,
        "agent": agent,
        "seed": int(seed),
        "overrides": json.loads(overrides),
        "iterations": int(iters),
        "train_s": round(train_s, 1),
        "sim": scores["sim"],
        "truth": scores["truth"],
        "train_reward": round(last.get("episode/total_reward", float("nan")), 3),
        "entropy": round(last.get("policy/entropy", float("nan")), 3),
        "item_entropy": round(last.get("policy/item_entropy", float("nan")), 3),
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:7])
