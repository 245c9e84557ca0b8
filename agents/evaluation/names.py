"""How the table, the plots and their files name a policy: a heuristic by its name, a model by its run."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["short_names", "slug"]


def short_names(names: list[str]) -> dict[str, str]:
    """How the table and the plots name each policy: a heuristic by its name, a model by its run.

    ``runs/ppo-double11_2013-seed0/model.zip`` is ``ppo-double11_2013-seed0``, its ``best_model.zip``
    ``ppo-double11_2013-seed0/best_model``, a checkpoint ``<run>/rl_model_<N>_steps``; where two policies would
    get the same name, both keep more of their path.
    """

    def short(name: str, more: int) -> str:
        path = Path(name)
        if path.suffix != ".zip":
            return name
        parts = list(path.with_suffix("").parts)
        keep = 2  # the run's folder and the file
        if len(parts) > 1 and parts[-1] == "model":  # a train.py run's final agent: the run stands for it
            parts.pop()
            keep = 1
        if len(parts) > 2 and parts[-2] == "checkpoints":
            del parts[-2]
        keep += more
        return name if keep > len(parts) else "/".join(parts[-keep:]).lstrip("/")

    out = {n: short(n, 0) for n in names}
    for more in range(1, 64):
        counts: dict[str, int] = {}
        for v in out.values():
            counts[v] = counts.get(v, 0) + 1
        clashes = [n for n, v in out.items() if counts[v] > 1]
        if not clashes:
            break
        out.update({n: short(n, more) for n in clashes})
    return out


def slug(name: str) -> str:
    """A file-name-safe version of a policy's short name."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return s.strip("_.") or "policy"
