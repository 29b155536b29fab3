"""Writes notebooks/tutorial.ipynb (outputs stripped) from the cells below; edit here, run
`python notebooks/make_tutorial.py`, commit both. tests/test_notebook.py executes the notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS = [
    (
        "markdown",
        """# hsrl tutorial: the whole workflow on a small budget

This notebook walks the steps the main job (`hsrl run`) chains, on a built-in world small
enough to run in a few minutes on a laptop CPU:

1. generate the built-in dataset (logged pages of simulated users whose true click model is known);
2. train the learned user simulator and measure its fidelity against the true users;
3. build semantic IDs (SIDs) for the items;
4. train HSRL and one baseline (HAC) against the learned simulator;
5. evaluate both on the learned simulator **and** on the true users;
6. report the results with plots.

Every step is the `hsrl` command of the same name; `hsrl(...)` below runs it in this process
(the same as typing `hsrl ...` in a shell). The budgets are tiny, so the numbers only show the
mechanics: the tables in `docs/` are measured at full budget.""",
    ),
    (
        "code",
        """import json
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

from hsrl.cli import main as hsrl

torch.set_num_threads(1)  # these networks are small: one thread is fastest on a busy machine
work = Path(tempfile.mkdtemp(prefix="hsrl-tutorial-"))
data, sim, sid, runs = work / "data", work / "simulator", work / "sid", work / "runs"
print(work)""",
    ),
    (
        "markdown",
        """## 1. Data

The built-in dataset follows the RL4RS format (a page of 9 items in 3 rows). 20 % of the
logged pages have a randomised layout, which lets the simulator tell an item's effect from its
slot's effect.""",
    ),
    (
        "code",
        """assert hsrl(["data", "prepare", "builtin", "--out", str(data), "--seed", "0",
             "--option", "num_users=400", "--option", "explore_percent=20"]) == 0
assert hsrl(["data", "info", str(data)]) == 0""",
    ),
    (
        "markdown",
        """## 2. The learned simulator and its fidelity

The response model predicts a click per slot from the user's profile and history. `fidelity`
compares it with the true users: AUC beside its ceiling, calibration, rank correlation, and
the transfer ratio (how much of the true users' greedy value a policy choosing by the
simulator keeps).""",
    ),
    (
        "code",
        """assert hsrl(["simulator", "train", "--data", str(data), "--out", str(sim), "--epochs", "2",
             "--variant", "ml1m", "--feature-dim", "32", "--no-progress"]) == 0
assert hsrl(["simulator", "fidelity", str(sim), "--data", str(data), "--episodes", "100",
             "--out", str(work / "fidelity")]) == 0
display(Image(filename=str(work / "fidelity" / "reliability.png")))""",
    ),
    (
        "markdown",
        """## 3. Semantic IDs

Residual k-means over the item features gives every item a short code (its SID); HSRL acts in
this fixed space of codes, level by level.""",
    ),
    (
        "code",
        """assert hsrl(["sid", "build", "--data", str(data), "--out", str(sid), "--levels", "3",
             "--codes", "8"]) == 0
report = json.loads((sid / "report.json").read_text())
print({key: report[key] for key in list(report)[:6]})""",
    ),
    (
        "markdown",
        """## 4. Train HSRL and a baseline

Both use the `builtin` preset (the main job's settings) with a short budget here.""",
    ),
    (
        "code",
        """for agent in ("hsrl", "hac"):
    assert hsrl(["train", "--agent", agent, "--preset", "builtin", "--data", str(data),
                 "--simulator", str(sim), "--sid", str(sid), "--out", str(runs / agent),
                 "--iterations", "300", "--no-progress"]) == 0""",
    ),
    (
        "markdown",
        """## 5. Evaluate on the simulator and on the true users

Always both columns: the true users are the one judge that no simulator error can fool.""",
    ),
    (
        "code",
        """for agent in ("hsrl", "hac"):
    assert hsrl(["evaluate", str(runs / agent), "--episodes", "200", "--name", "sim"]) == 0
    assert hsrl(["evaluate", str(runs / agent), "--episodes", "200", "--ground-truth",
                 "--name", "truth"]) == 0
for agent in ("hsrl", "hac"):
    scores = {where: json.loads((runs / agent / "eval" / f"{where}.json").read_text())
              for where in ("sim", "truth")}
    print(agent, {where: round(s["metrics"]["total_reward"]["mean"], 2)
                  for where, s in scores.items()})""",
    ),
    (
        "markdown",
        """## 6. Report

`hsrl report` reads run folders and writes tables and plots.""",
    ),
    (
        "code",
        """assert hsrl(["report", str(runs), "--out", str(work / "report")]) == 0
print((work / "report" / "results.md").read_text())
display(Image(filename=str(work / "report" / "learning_curves.png")))""",
    ),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    for kind, text in CELLS:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(text))
    return notebook


if __name__ == "__main__":
    nbformat.write(build(), Path(__file__).with_name("tutorial.ipynb"))
