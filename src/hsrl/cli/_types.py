"""argparse value types shared by the subcommands: each rejects a bad value with a one-line
usage error naming the flag."""

from __future__ import annotations

import argparse
import math
import re

_RESULT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def finite_float(text: str) -> float:
    """A float flag: NaN and infinities are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def result_name(text: str) -> str:
    """A result file's name inside a folder: one plain file name, never a path."""
    if not _RESULT_NAME.fullmatch(text) or text.endswith((".", "..")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain file name (letters, digits, '.', '_', '+' and '-', "
            "starting with a letter or digit, at most 200 characters; no path)"
        )
    return text


SEED_LIMIT = 2**63


def seed(text: str) -> int:
    """A seed flag: a whole number in 0 .. 2^63 - 1 (what torch and NumPy generators take)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2^63 - 1, got {text}")
    return value
