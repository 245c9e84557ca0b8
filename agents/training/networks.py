"""Network pieces for SB3 policies on payroute.

``PerBankExtractor`` encodes every bank's block of the observation with **one shared network** (the same
weights for ICBC and for PSBC, told apart by a one-hot bank id), then lets each bank see a summary of all
banks (the mean of their encodings, as in Deep Sets, Zaheer et al. 2017). Banks behave alike (a queue, a
core that tips over, users who retry), so one encoder learns from six banks' experience at once; the pooled
summary carries what couples them (the shared switch, card switchers moving between banks).

Use it from a hyper-parameter file or the command line::

    policy_kwargs:
      features_extractor_class: per_bank      # agents.training.hyperparams.policy_kwargs maps the name to this class
      features_extractor_kwargs: {hidden: 32}
"""

from __future__ import annotations

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from payroute_env import observations as env_observations

__all__ = ["PerBankExtractor", "observation_layout"]

_BANK = len(env_observations.BANK_FEATURES)  # 28 observed values per bank
_GLOBAL = len(env_observations.GLOBAL_FEATURES)  # 4
_INTERNAL_BANK = len(env_observations.INTERNAL_BANK)  # 6 (observe_internal only)
_INTERNAL_SWITCH = len(env_observations.INTERNAL_SWITCH)  # 5


def observation_layout(size: int) -> tuple[int, bool]:
    """``(n_banks, observe_internal)`` of a payroute observation vector of ``size`` values."""
    if size > _GLOBAL and (size - _GLOBAL) % _BANK == 0:
        return (size - _GLOBAL) // _BANK, False
    internal = _BANK + _INTERNAL_BANK
    if size > _GLOBAL + _INTERNAL_SWITCH and (size - _GLOBAL - _INTERNAL_SWITCH) % internal == 0:
        return (size - _GLOBAL - _INTERNAL_SWITCH) // internal, True
    raise ValueError(
        f"an observation of {size} values is not a payroute observation "
        f"({_BANK} per bank + {_GLOBAL}, or {_BANK + _INTERNAL_BANK} per bank + {_GLOBAL + _INTERNAL_SWITCH})"
    )


class PerBankExtractor(BaseFeaturesExtractor):
    """One encoder shared by all banks, plus a pooled summary of all banks (see the module docstring).

    ``bank_id=False`` leaves out the one-hot bank id: every bank is then encoded from what it shows alone,
    which cannot memorise one scenario's banks (see docs/RESULTS.md, "Other agents").

    Output: every bank's final encoding (``hidden`` values each, bank-major) followed by the global values
    (balance traffic, episode progress, and the switch's hidden state with ``observe_internal``).
    """

    def __init__(self, observation_space: gym.spaces.Box, hidden: int = 32, bank_id: bool = True) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"features_extractor_kwargs.hidden = {hidden!r}: expected a whole number >= 1")
        if not isinstance(bank_id, bool):
            raise ValueError(f"features_extractor_kwargs.bank_id = {bank_id!r}: expected true or false")
        if len(observation_space.shape) != 1:
            raise ValueError(f"PerBankExtractor needs a flat observation; got shape {observation_space.shape}")
        n_banks, internal = observation_layout(int(observation_space.shape[0]))
        n_global = _GLOBAL + (_INTERNAL_SWITCH if internal else 0)
        super().__init__(observation_space, features_dim=n_banks * hidden + n_global)
        self.n_banks, self.internal, self.n_global = n_banks, internal, n_global
        per_bank = _BANK + (_INTERNAL_BANK if internal else 0)
        n_id = n_banks if bank_id else 0
        self.encode = nn.Sequential(nn.Linear(per_bank + n_id + n_global, hidden), nn.Tanh())
        self.combine = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh())
        self.register_buffer("bank_id", th.eye(n_banks)[:, :n_id])

    def split(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``obs [N, D]`` to per-bank values ``[N, B, per_bank]`` and global values ``[N, n_global]``."""
        B = self.n_banks
        banks = obs[:, : _BANK * B].reshape(-1, B, _BANK)
        glob = obs[:, _BANK * B : _BANK * B + _GLOBAL]
        if self.internal:
            start = _BANK * B + _GLOBAL
            hidden_bank = obs[:, start : start + _INTERNAL_BANK * B].reshape(-1, B, _INTERNAL_BANK)
            banks = th.cat([banks, hidden_bank], dim=2)
            glob = th.cat([glob, obs[:, start + _INTERNAL_BANK * B :]], dim=1)
        return banks, glob

    def forward(self, observations: th.Tensor) -> th.Tensor:
        banks, glob = self.split(observations)
        N, B = banks.shape[0], self.n_banks
        ids = self.bank_id.expand(N, B, self.bank_id.shape[1])
        inputs = th.cat([banks, ids, glob[:, None, :].expand(N, B, self.n_global)], dim=2)
        h = self.encode(inputs)  # [N, B, hidden], the same weights for every bank
        pooled = h.mean(dim=1, keepdim=True).expand_as(h)
        h = self.combine(th.cat([h, pooled], dim=2))
        return th.cat([h.reshape(N, -1), glob], dim=1)
