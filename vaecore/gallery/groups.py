"""Replicates: runs that differ only in their seed form a group; its spread decides best or tied.

The rule the index states: a group is marked best for a metric only when its mean beats every
other group's mean by more than twice the standard error of the difference,
sqrt(s_a^2 / n_a + s_b^2 / n_b); otherwise it and the groups within that margin are marked tied.
A group with one run adds no spread term (its noise is unknown, not zero: a caveat the page states).
Without replicates (every group one run) the best value is marked as before.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from vaecore.gallery.format import DASH, fmt, metric, vkey

SEED = "train.seed"
RULE = (
    "With replicates, a value is marked best only when its group's mean beats every other group's "
    "by more than twice the standard error of the difference, √(s₁²/n₁ + s₂²/n₂); otherwise the "
    "groups within that margin are marked tied. A single run counts with no spread."
)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for a single value
    n: int

    @property
    def var_of_mean(self) -> float:
        return self.std**2 / self.n


def stat(values: list[float]) -> Stat | None:
    if not values:
        return None
    n, mean = len(values), sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Stat(mean, math.sqrt(var), n)


def fmt_stat(s: Stat | None, spec: str) -> str:
    """'-27.50 ± 0.12 (3)'; a single value is shown as itself."""
    if s is None:
        return DASH
    if s.n == 1:
        return fmt(s.mean, spec)
    return f"{fmt(s.mean, spec)} ± {fmt(s.std, spec)} ({s.n})"


def verdicts(stats: list[Stat | None], better: str) -> list[str]:
    """'best', 'tied' or '' for each entry (None = no value) under the rule in this module's docstring."""
    sign = 1.0 if better == "max" else -1.0
    known = [i for i, s in enumerate(stats) if s is not None]
    out = [""] * len(stats)
    if len(known) < 2:
        return out
    top = max(known, key=lambda i: sign * stats[i].mean)
    if all(stats[i].n == 1 for i in known):  # no replicates: the best value, as without groups
        return ["best" if i in known and stats[i].mean == stats[top].mean else "" for i in range(len(stats))]
    b = stats[top]
    tied = [
        i
        for i in known
        if i != top and sign * (b.mean - stats[i].mean) <= 2 * math.sqrt(b.var_of_mean + stats[i].var_of_mean)
    ]
    out[top] = "tied" if tied else "best"
    for i in tied:
        out[i] = "tied"
    return out


def group_runs(runs: list[dict]) -> list[dict]:
    """Runs with equal params apart from train.seed, in order of first appearance.

    Each group: id ("u0", ...), name (the first run's name without its seed part), params (without
    the seed), runs.
    """
    groups: dict[str, dict] = {}
    for run in runs:
        params = {k: v for k, v in run["params"].items() if k != SEED}
        key = json.dumps({k: vkey(v) for k, v in params.items()}, sort_keys=True)
        if key not in groups:
            name = re.sub(r"-s-?\d+(?=-|$)", "", run["name"]) if SEED in run["params"] else run["name"]
            groups[key] = {"id": f"u{len(groups)}", "name": name or run["name"], "params": params, "runs": []}
        groups[key]["runs"].append(run)
    return list(groups.values())


def group_stat(group: dict, key: str) -> Stat | None:
    """The metric over the group's runs that have it (failed and unprocessed runs have none)."""
    return stat([v for r in group["runs"] if (v := metric(r, key)) is not None])
