"""The pretrained agents that ship with payroute, loaded by name (``pretrained:<name>``) with no training.

Each one is a folder ``agents/pretrained/<name>/``:

| file | what it holds |
|---|---|
| ``model.zip`` | the SB3 model with its VecNormalize statistics inside; it loads without running code from it |
| ``card.json`` | how it was trained (command, steps, seed, machine, commit) and what it scored, per world |
| ``card.md`` | the same card for people: the command and a results table per world |

The card's ``check`` entry holds the failed-payment rate of two episodes, which ``tests/test_pretrained.py``
reproduces: a change of the simulator that silently invalidates a shipped agent fails the suite. A card is
written by ``python -m agents.training.ship`` from a train.py run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .policy import PolicyError

__all__ = ["PREFIX", "PRETRAINED_DIR", "pretrained_agents", "pretrained_card", "pretrained_model"]

PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained_agents() -> dict[str, str]:
    """The shipped agents' names and one-line descriptions, in name order."""
    return {name: pretrained_card(name)["description"] for name in _shipped()}


def pretrained_card(name: str) -> dict[str, Any]:
    """A shipped agent's card (``card.json``): training, results and the check the suite reproduces."""
    path = _folder(name) / "card.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"pretrained agent {name!r}: unreadable card {path} ({exc})") from None


def pretrained_model(name: str) -> Path:
    """The ``model.zip`` of a shipped agent; a ``PolicyError`` naming the agents there are for an unknown name."""
    path = _folder(name) / "model.zip"
    if not path.is_file():
        raise PolicyError(f"pretrained agent {name!r} has no model.zip in {path.parent}")
    return path


def _shipped() -> list[str]:
    """The names of the folders with a card, in name order."""
    return sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/card.json"))


def _folder(name: str) -> Path:
    # only a name from the folder's own listing: "..", "a/b" or an absolute path can never leave it
    shipped = _shipped()
    if name not in shipped:
        raise PolicyError(f"unknown pretrained agent {name!r}; shipped: {', '.join(shipped) or 'none'}")
    return PRETRAINED_DIR / name
