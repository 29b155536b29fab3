"""Probe patch: a satiation term in the response model (item penalty from similarity to the
last M clicks), installed by patching hsrl.simulator.train.UserResponseModel."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

import hsrl.simulator.train as sim_train
from hsrl.simulator.response_model import UserResponseModel

WINDOW = int(os.environ.get("SAT_WINDOW", "20"))


class SatiationModel(UserResponseModel):
    def __init__(self, config, item_features):
        super().__init__(config, item_features)
        self.sat_map = nn.Linear(config.item_feature_dim, 16)
        self.sat_weight = nn.Parameter(torch.tensor(2.0))
        self.sat_threshold = nn.Parameter(torch.tensor(-0.85))  # sigmoid -> 0.3

    def item_logits(self, user_profile, history, items):
        base = super().item_logits(user_profile, history, items)
        g = F.normalize(self.sat_map(self.item_features), dim=-1)  # (N+1, 16)
        recent = history[:, -WINDOW:]
        gi, gj = g[items], g[recent]  # (B, C, d), (B, m, d)
        cos = gi @ gj.transpose(1, 2)  # (B, C, m)
        t = torch.sigmoid(self.sat_threshold)
        pen = ((cos - t).clamp_min(0) / (1 - t)) * (recent > 0).unsqueeze(1)
        return base - F.softplus(self.sat_weight) * pen.sum(-1) / WINDOW


sim_train.UserResponseModel = SatiationModel
