"""Probe: does a more exploratory logging policy raise the transfer ratio?

python reproductions/simulator_probes/world_probe.py OUT DEVICE SEED TEMPERATURE RANDOM_ITEM_SHARE N_SIMS
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import torch

import hsrl.data.builtin as b

if __import__("os").environ.get("SATIATION"):
    sys.path.insert(0, str(Path(__file__).parent))
    import satiation  # noqa: F401

out, device, seed, temp, share, n = sys.argv[1:7]
temp, share = float(temp), float(share)
b.GeneratorConfig = functools.partial(b.GeneratorConfig, behaviour_temperature=temp)
_call = b._BehaviourPolicy.__call__


def call(self, user, gen):
    if share <= 0:
        return _call(self, user, gen)
    model = self.model
    rows = []
    random_page = torch.rand(user.shape[0], generator=gen, device=user.device) < share
    for ids in self.groups:
        score = model.user_latent[user] @ model.item_embedding[ids].T / math.sqrt(model.latent_dim)
        score = score + model.item_appeal[ids]
        score = torch.where(
            random_page.unsqueeze(1), torch.zeros_like(score), score / self.temperature
        )
        u = torch.rand(score.shape, generator=gen, device=score.device)
        keys = score - torch.log(-torch.log(u.clamp_(1e-12, 1 - 1e-7)))
        rows.append(ids[keys.topk(3, dim=1).indices])
    return torch.cat(rows, dim=1)


b._BehaviourPolicy.__call__ = call
data = Path(out) / "data"
if not (data / "manifest.json").exists():
    b.prepare_builtin(
        None,
        data,
        seed=int(seed),
        overwrite=False,
        options={
            "num_users": __import__("os").environ.get("USERS", "30000"),
            "explore_percent": "20",
        },
    )
sys.argv = ["ensemble_probe", str(data), str(Path(out) / "ens"), device, n]
sys.path.insert(0, str(Path(__file__).parent))
import ensemble_probe  # noqa: E402

ensemble_probe.main(str(data), str(Path(out) / "ens"), device, n)
