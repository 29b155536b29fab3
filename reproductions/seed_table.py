"""Mean ± std [95 % t-interval over seeds] of grid cells, from agent_grid.py's JSON lines.

    python reproductions/seed_table.py RESULTS.jsonl [MORE.jsonl ...]

Groups lines by (name, agent, ground truth or not); prints one markdown row per group with the
seeds it holds, on the learned simulator and on the true users.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from hsrl.stats import summarize


def main(paths: list[str]) -> None:
    groups: dict[tuple[str, str, bool], dict[int, dict]] = defaultdict(dict)
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        for line in lines:
            if line.strip():
                row = json.loads(line)
                truth = bool(row["overrides"].get("env", {}).get("ground_truth", False))
                groups[(row["name"], row["agent"], truth)][row["seed"]] = row
    print("| cell | agent | trained on | seeds | simulator | true users |")
    print("|---|---|---|---|---|---|")
    for (name, agent, truth), rows in groups.items():
        cells = []
        for column in ("sim", "truth"):
            s = summarize([rows[seed][column] for seed in sorted(rows)])
            cells.append(
                f"{s['mean']:.2f} ± {s['std']:.2f} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}]"
            )
        where = "true users" if truth else "simulator"
        seeds = ",".join(map(str, sorted(rows)))
        print(f"| {name} | {agent} | {where} | {seeds} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main(sys.argv[1:])
