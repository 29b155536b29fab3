"""Run logs: a JSONL file always, TensorBoard events when TensorBoard is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = run_dir / "log.jsonl"
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # TensorBoard is an optional extra
                self._writer = None
            else:
                self._writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if self._writer is not None:
            step = record.get("iteration", 0)
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._handle.close()
        if self._writer is not None:
            self._writer.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL log, skipping a last line cut short by a crash (never ``eval``)."""
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            from hsrl.errors import DataError

            raise DataError(path, "not a JSON object", line=number) from None
    return records


def truncate_log(path: Path, last_iteration: int) -> int:
    """Drop the lines of a JSONL run log after ``last_iteration`` (written by a run killed after
    its last checkpoint, and about to be trained again by a resume), atomically; returns how
    many were dropped. A last line cut short by a crash goes too."""
    if not path.is_file():
        return 0
    from hsrl.io import atomic_write_bytes

    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            iteration = int(record["iteration"])
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        if iteration <= last_iteration:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())
    return dropped
