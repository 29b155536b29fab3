"""The response model computes the reference architecture, on every code path."""

from __future__ import annotations

import pytest
import torch

from hsrl.errors import ConfigError
from hsrl.simulator import ResponseModelConfig, UserResponseModel


def reference_logits(model: UserResponseModel, profile, history, slate) -> torch.Tensor:
    """The HAC reference's forward pass, written with nn.MultiheadAttention's own forward."""
    features = model.item_features
    seq_emb = model.item_encoder(features[history])
    seq, _ = model.history_attention(seq_emb, seq_emb, seq_emb)
    user = model.profile_encoder(profile).unsqueeze(1)
    intent, _ = model.user_attention(user, seq, seq)
    if model.fuse is not None:
        intent = model.fuse(torch.cat((intent, user), dim=-1))
    return (model.item_encoder(features[slate]) * intent).sum(-1)


def make_model(variant: str = "rl4rs", num_items: int = 300, seed: int = 0) -> UserResponseModel:
    torch.manual_seed(seed)
    features = torch.randn(num_items + 1, 6)
    features[0] = 0
    config = ResponseModelConfig(
        variant=variant, profile_dim=5, item_feature_dim=6, history_length=8
    )
    return UserResponseModel(config, features).eval()


def inputs(batch: int, num_items: int = 300, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    profile = torch.rand(batch, 5, generator=generator)
    history = torch.randint(0, num_items + 1, (batch, 8), generator=generator)
    history[0] = 0  # an empty history is fine
    slate = torch.randint(1, num_items + 1, (batch, 4), generator=generator)
    return profile, history, slate


@pytest.mark.parametrize("variant", ["rl4rs", "ml1m"])
def test_forward_matches_reference_on_all_paths(variant):
    model = make_model(variant)
    small = inputs(2)  # touches fewer ids than the table: gathers features, then projects
    large = inputs(64)  # touches more ids than the table: projects the table, then gathers
    for batch in (small, large):
        expected = reference_logits(model, *batch)
        torch.testing.assert_close(model(*batch), expected, atol=1e-5, rtol=1e-5)
        with torch.no_grad():  # cached projected table
            torch.testing.assert_close(model(*batch), expected, atol=1e-5, rtol=1e-5)
        with torch.inference_mode():
            torch.testing.assert_close(model(*batch), expected, atol=1e-5, rtol=1e-5)


def test_variants_differ_only_by_the_fusion_layer():
    assert make_model("rl4rs").fuse is None
    fuse = make_model("ml1m").fuse
    assert fuse is not None and (fuse.in_features, fuse.out_features) == (32, 16)


def test_gradients_flow_to_every_parameter():
    model = make_model().train()
    logits = model(*inputs(64))
    (logits.sum() + model.l2_penalty()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_cache_follows_weight_changes():
    model = make_model()
    batch = inputs(16)
    with torch.no_grad():
        before = model(*batch)
        model.train()  # an optimiser step happens in training mode
        model.item_encoder.weight.add_(0.5)
        model.eval()
        after = model(*batch)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference_logits(model, *batch), atol=1e-5, rtol=1e-5)


def test_set_item_features_scores_new_items():
    model = make_model(num_items=300)
    bigger = torch.randn(401, 6)
    bigger[0] = 0
    with torch.no_grad():
        model(*inputs(4))  # fill the cache with the old table
        model.set_item_features(bigger)
        new_items = (
            torch.rand(4, 5),
            torch.zeros(4, 8, dtype=torch.long),
            torch.tensor([[350, 400, 1, 2]] * 4),
        )
        logits = model(*new_items)
    assert model.num_items == 400
    torch.testing.assert_close(logits, reference_logits(model, *new_items), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="columns"):
        model.set_item_features(torch.zeros(10, 7))


def test_config_validation():
    with pytest.raises(ConfigError, match="num_heads"):
        ResponseModelConfig(feature_dim=16, num_heads=3)
    with pytest.raises(ConfigError, match="variant"):
        ResponseModelConfig(variant="kuairand")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="profile_dim"):
        UserResponseModel(ResponseModelConfig(), torch.zeros(5, 3))
