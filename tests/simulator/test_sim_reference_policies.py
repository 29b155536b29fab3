"""Reference policies (random, greedy, oracle), the transfer test and the fidelity report."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from hsrl.agents.reference import count_reward, expected_reward, oracle_slates
from hsrl.cli import main
from hsrl.errors import ConfigError
from hsrl.simulator.fidelity import kendall_tau, spearman_rows
from hsrl.simulator.rewards import get_reward

INF = float("inf")


def test_count_reward_of_the_sweet_point():
    r = count_reward(get_reward("rl4rs"), 9, torch.device("cpu"))
    # 8 clicks: mean_with_cost = (8 - 0.1) / 9 = 0.8778, r = 1 - |0.8778 - 0.9| = 0.9778.
    assert r[8].item() == pytest.approx(1 - abs(7.9 / 9 - 0.9), abs=1e-6)
    assert r[9].item() == pytest.approx(0.9, abs=1e-6)
    assert int(r.argmax()) == 8

    def by_position(response):  # depends on which slot was clicked, not only how many
        return response[:, 0]

    with pytest.raises(ConfigError, match="number of clicks"):
        count_reward(by_position, 3, torch.device("cpu"))


def test_click_count_law_by_hand():
    law = expected_reward(torch.tensor([[0.5, 0.5]]), torch.tensor([0.0, 1.0, 0.0]))
    assert law.item() == pytest.approx(0.5)  # P(exactly one click) = 2 * 0.25


def test_oracle_takes_eight_sure_clicks_and_one_sure_miss_where_greedy_takes_nine():
    # 9 items the user surely clicks, 2 they surely ignore, 1 in between; ids 1..12.
    logits = torch.tensor([[-INF] + [10.0] * 9 + [-10.0, -10.0, 0.0]])
    r = count_reward(get_reward("rl4rs"), 9, torch.device("cpu"))
    slate = oracle_slates(logits, torch.zeros(9), r)[0]
    assert len(set(slate.tolist())) == 9
    assert sum(i in (10, 11) for i in slate.tolist()) == 1  # exactly one sure miss
    assert 12 not in slate.tolist()
    value = expected_reward(torch.sigmoid(logits[0, slate]).double(), r.double())
    assert value.item() == pytest.approx(1 - abs(7.9 / 9 - 0.9), abs=1e-3)
    greedy = logits.topk(9).indices[0]
    assert expected_reward(torch.sigmoid(logits[0, greedy]).double(), r.double()) < value - 0.07


@pytest.mark.parametrize("with_slots", [False, True])
def test_oracle_matches_exhaustive_search_on_small_cases(with_slots):
    gen = torch.Generator().manual_seed(3)
    k, n = 4, 7
    reward = torch.tensor([0.0, 0.3, 0.6, 1.0, 0.7])  # best at 3 clicks of 4
    for _ in range(60):
        logits = torch.randn(2, n + 1, generator=gen) * 2
        logits[:, 0] = -INF
        logits[1, 3] = -INF  # an item that cannot be shown
        slots = torch.zeros(k)
        if with_slots:
            slots = (torch.randn(k, generator=gen) * 1.5).sort(descending=True).values
        got = oracle_slates(logits, slots, reward, refine=k + 1)
        for b in range(2):

            def value(s, b=b, logits=logits, slots=slots):
                p = torch.sigmoid(logits[b, list(s)].double() + slots.double())
                return float(expected_reward(p, reward.double()))

            allowed = [i for i in range(1, n + 1) if torch.isfinite(logits[b, i])]
            best = max(value(s) for s in itertools.permutations(allowed, k))
            assert set(got[b].tolist()) <= set(allowed) and len(set(got[b].tolist())) == k
            assert value(got[b].tolist()) == pytest.approx(best, abs=1e-9)


def test_spearman_and_kendall_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])
    assert spearman_rows(a, b).tolist() == pytest.approx([1.0, -1.0])
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


# ------------------------------------------------------------------ on a built-in world
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    data, sim = root / "data", root / "sim"
    assert main(["data", "prepare", "builtin", "--out", str(data), "--option", "num_users=80",
                 "--option", "explore_percent=30"]) == 0  # fmt: skip
    assert main(["simulator", "train", "--data", str(data), "--out", str(sim), "--epochs", "1",
                 "--no-progress"]) == 0  # fmt: skip
    return data, sim


def _evaluate(capsys, *argv):
    assert main(["evaluate", *argv, "--episodes", "20", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_reference_policies_without_a_run(world, capsys):
    data, sim = world
    assert json.loads((sim / "config.json").read_text())["model"]["position"] == "slot"
    results = {}
    for policy in ("random", "greedy", "oracle"):
        for where in (["--simulator", str(sim)], ["--ground-truth"]):
            r = _evaluate(capsys, "--policy", policy, "--data", str(data), *where)
            results[(policy, where[0])] = r["metrics"]["total_reward"]["mean"]
            assert r["metrics"]["total_reward"]["n"] == 20
    # Under its own model, the reward-optimal myopic slate beats the click-optimal one.
    assert results[("oracle", "--simulator")] >= results[("greedy", "--simulator")] - 0.5
    assert results[("greedy", "--ground-truth")] > results[("random", "--ground-truth")]


def test_the_transfer_policy_is_greedy_when_ranker_and_env_are_one_simulator(world, capsys):
    data, sim = world
    plain = _evaluate(capsys, "--policy", "greedy", "--data", str(data), "--simulator", str(sim))
    ranked = _evaluate(capsys, "--policy", "greedy", "--data", str(data), "--simulator",
                       str(sim), "--ranker", str(sim))  # fmt: skip
    assert ranked["metrics"] == plain["metrics"]
    assert ranked["evaluation"]["ranker"] == str(sim)
    # Ranking by the truth while acting on the truth is the truth's own greedy.
    own = _evaluate(capsys, "--policy", "oracle", "--data", str(data), "--ground-truth")
    by_truth = _evaluate(capsys, "--policy", "oracle", "--data", str(data), "--ground-truth",
                         "--rank-by-truth")  # fmt: skip
    assert by_truth["metrics"] == own["metrics"]


def test_random_mix_grades_greedy_towards_random(world, capsys):
    data, _ = world
    values = {}
    for eps in (0.0, 1.0):
        r = _evaluate(capsys, "--policy", "greedy", "--data", str(data), "--ground-truth",
                      "--epsilon", str(eps))  # fmt: skip
        values[eps] = r
    rand = _evaluate(capsys, "--policy", "random", "--data", str(data), "--ground-truth")
    # epsilon 1 shows only random slates: the random policy's law (not its draws).
    assert values[1.0]["agent"] == "greedy eps=1"
    total = {eps: r["metrics"]["total_reward"]["mean"] for eps, r in values.items()}
    assert total[1.0] < total[0.0]
    assert abs(total[1.0] - rand["metrics"]["total_reward"]["mean"]) < 1.5
    assert main(["evaluate", "--policy", "greedy", "--data", str(data), "--ground-truth",
                 "--epsilon", "1.5"]) == 1  # fmt: skip
    assert "epsilon" in capsys.readouterr().err


def test_fidelity_report(world, tmp_path, capsys):
    data, sim = world
    out = tmp_path / "fid"
    argv = ["simulator", "fidelity", str(sim), "--data", str(data), "--episodes", "20",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("transfer_ratio", "rank_correlation", "kendall_tau", "auc", "auc_ceiling"):
        assert isinstance(report[key], float)
    assert -1 <= report["rank_correlation"] <= 1 and -1 <= report["kendall_tau"] <= 1
    assert set(report["rank_correlation_within_row"]) == {"1", "2", "3"}
    assert set(report["cross_evaluation"]) == {
        "random", "greedy (sim)", "oracle (sim)", "greedy (truth)", "oracle (truth)",
        "greedy (truth) eps=0.25", "greedy (truth) eps=0.5", "greedy (truth) eps=0.75",
    }  # fmt: skip
    assert -1 <= report["kendall_tau_graded"] <= 1
    assert report["auc_ceiling"] > 0.5
    assert (out / "fidelity.json").is_file() and (out / "fidelity.md").is_file()
    if report.get("calibration"):
        assert sum(row["count"] for row in report["calibration"]) == report["records"] * 9


def test_bad_input_to_reference_policies_and_fidelity(world, tiny_dataset, tmp_path, capsys):
    data, sim = world
    # A ranker trained on another item table.
    other = tmp_path / "other_sim"
    assert main(["simulator", "train", "--data", str(tiny_dataset), "--out", str(other),
                 "--epochs", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    cases = [
        (["evaluate", "--policy", "greedy", "--data", str(data), "--ground-truth", "--ranker",
          str(other)], "--ranker"),
        (["evaluate", "--policy", "greedy", "--data", str(data)], "exactly one"),
        (["evaluate", "--policy", "oracle"], "RUN_DIR"),
        (["evaluate", "--policy", "random", "--data", str(data), "--ground-truth",
          "--rank-by-truth"], "greedy and oracle"),
        (["simulator", "fidelity", str(other), "--data", str(tiny_dataset)], "ground truth"),
        (["evaluate", "--policy", "greedy", "--data", str(data), "--simulator", str(other)],
         "does not match"),
    ]  # fmt: skip
    for argv, expected in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
