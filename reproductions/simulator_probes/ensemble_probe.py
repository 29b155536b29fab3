"""Probe: does averaging the logits of several response models raise the transfer ratio?

python reproductions/simulator_probes/ensemble_probe.py DATA OUT DEVICE N [SETTINGS_JSON]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

import hsrl.simulator.train as sim_train
from hsrl.evaluate import EvalSettings, evaluate_policy
from hsrl.simulator.fidelity import response_fidelity
from hsrl.simulator.response_model import ResponseModelConfig
from hsrl.simulator.train import SimulatorTrainConfig, train_simulator

_load = sim_train.load_simulator


class Ensemble(nn.Module):
    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config = members[0].config
        self.dataset_fingerprint = members[0].dataset_fingerprint
        self.simulator_path = members[0].simulator_path

    @property
    def item_features(self):
        return self.members[0].item_features

    @property
    def num_items(self):
        return self.members[0].num_items

    def set_item_features(self, f):
        for m in self.members:
            m.set_item_features(f)

    def item_logits(self, p, h, items):
        return torch.stack([m.item_logits(p, h, items) for m in self.members]).mean(0)

    def slot_logits(self, k):
        s = [m.slot_logits(k) for m in self.members]
        return None if s[0] is None else torch.stack(s).mean(0)

    def forward(self, p, h, slate):
        logits = self.item_logits(p, h, slate)
        s = self.slot_logits(slate.shape[-1])
        return logits if s is None else logits + s

    def click_probability(self, p, h, slate):
        return torch.sigmoid(self.forward(p, h, slate))


def load(path, device="cpu"):
    text = str(path)
    if Path(text).name.startswith("ens="):
        dirs = Path(text).name[4:].split("+")
        base = Path(text).parent
        return Ensemble([_load(base / d, device) for d in dirs]).to(device).eval()
    return _load(path, device)


sim_train.load_simulator = load


def main(
    data, out, device, n, settings='{"epochs": 5, "model": {"variant": "ml1m", "feature_dim": 32}}'
):
    n = int(n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for s in range(n):
        d = out / f"m{s}"
        if (d / "metrics.json").exists():
            continue
        options = json.loads(settings)
        model = {"position": "auto", **options.pop("model", {})}
        config = SimulatorTrainConfig(model=ResponseModelConfig(**model), seed=s, **options)
        t = time.perf_counter()
        train_simulator(data, d, config, device=device, progress=False, log=None, overwrite=True)
        print(json.dumps({"trained": str(d), "s": round(time.perf_counter() - t, 1)}), flush=True)
    ev = EvalSettings(episodes=1000, seed=0)

    def on_truth(policy, ranker):
        r = evaluate_policy(policy, data, ev, ground_truth=True, ranker=ranker, device=device)
        return r["metrics"]["total_reward"]["mean"]

    base = {p: on_truth(p, None) for p in ("greedy", "oracle")}
    print(json.dumps({"truth": base}), flush=True)
    sets = [[s] for s in range(n)] + [list(range(k)) for k in range(2, n + 1)]
    for members in sets:
        name = "ens=" + "+".join(f"m{s}" for s in members)
        path = out / name if len(members) > 1 else out / f"m{members[0]}"
        rep = response_fidelity(data, path, device=device)
        g, o = on_truth("greedy", path), on_truth("oracle", path)
        print(
            json.dumps(
                {
                    "members": members,
                    "rank": rep["rank_correlation"],
                    "auc": rep["auc"],
                    "ceiling": rep["auc_ceiling"],
                    "greedy": round(g, 3),
                    "oracle": round(o, 3),
                    "transfer": round(g / base["greedy"], 4),
                    "oracle_transfer": round(o / base["oracle"], 4),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
