"""One cell of the simulator grid in docs/simulator.md: train a response model with the given
settings and print one JSON line of fidelity numbers (AUC and ceiling, rank correlation, the
greedy transfer ratio on 1,000 test users, evaluation seed 0).

    python reproductions/simulator_grid.py DATA OUT '{"epochs": 5, "model": {"variant": "ml1m"}}' [DEVICE]

DATA is a prepared built-in dataset (``hsrl data prepare builtin --option num_users=...
--option explore_percent=...``); the JSON holds SimulatorTrainConfig fields, with "model"
holding ResponseModelConfig fields (position defaults to "auto").
"""

from __future__ import annotations

import json
import sys
import time

import torch

from hsrl.evaluate import EvalSettings, evaluate_policy
from hsrl.simulator.fidelity import response_fidelity
from hsrl.simulator.response_model import ResponseModelConfig
from hsrl.simulator.train import SimulatorTrainConfig, train_simulator


def main(data: str, out: str, settings: str, device: str = "cpu") -> None:
    if device == "cpu":
        torch.set_num_threads(1)
    options = json.loads(settings)
    model = {"position": "auto", **options.pop("model", {})}
    config = SimulatorTrainConfig(model=ResponseModelConfig(**model), **options)
    start = time.perf_counter()
    metrics = train_simulator(
        data, out, config, device=device, progress=False, log=None, overwrite=True
    )
    seconds = time.perf_counter() - start
    report = response_fidelity(data, out, device=device)
    eval_settings = EvalSettings(episodes=1000, seed=0)

    def greedy_on_truth(ranker):
        result = evaluate_policy(
            "greedy", data, eval_settings, ground_truth=True, ranker=ranker, device=device
        )
        return result["metrics"]["total_reward"]["mean"]

    by_sim, by_truth = greedy_on_truth(out), greedy_on_truth(None)
    line = {
        "data": data,
        "cfg": settings,
        "train_s": round(seconds, 1),
        "val_auc": metrics["best_val_auc"],
        "best_epoch": metrics["best_epoch"],
        "auc": report["auc"],
        "ceiling": report["auc_ceiling"],
        "rank": report["rank_correlation"],
        "within": report["rank_correlation_within_row"],
        "ece": report["expected_calibration_error"],
        "greedy_sim_on_truth": round(by_sim, 3),
        "greedy_truth": round(by_truth, 3),
        "transfer": round(by_sim / by_truth, 4),
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
