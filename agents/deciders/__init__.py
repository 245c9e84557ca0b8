"""Who decides: the :class:`Policy` interface, the hand-written heuristics, trained SB3 agents behind the same
interface, and :func:`load_policy`, which turns a heuristic name, a model ``.zip`` or a run folder into one.

Importing this room loads neither torch nor stable-baselines3 (a trained model's algorithm class is imported
when a model is loaded), so heuristic-only users stay light.
"""

from .heuristics import HEURISTICS
from .loading import ALGORITHMS, available_policies, load_policy
from .policy import Policy, PolicyError
from .trained import SB3Policy, model_file

__all__ = [
    "ALGORITHMS",
    "HEURISTICS",
    "Policy",
    "PolicyError",
    "SB3Policy",
    "available_policies",
    "load_policy",
    "model_file",
]
