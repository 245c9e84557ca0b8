"""Where a fresh continuous policy starts: at the 2013 status quo (admit all, quick) rather than the box's middle."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from payroute_env import actions

__all__ = ["start_at_status_quo"]


def start_at_status_quo(model: Any, n_banks: int) -> bool:
    """Centre a fresh continuous policy on the status quo (admit all, quick): the zero action.

    The zero action is the status quo, so SB3's fresh Gaussian policies (PPO, A2C, RecurrentPPO) already start
    there, within 0.01: for them this only confirms it (the output bias is set to zero), and their
    hyper-parameter files no longer ask for it. SAC's and TD3's tanh actors start up to about 0.12 away
    (admit 0.88 for some bank): their output layer's bias is set to the status quo and its weights shrunk to
    1%, so the mean starts there whatever the observation. Returns whether it applied (PPO, A2C, RecurrentPPO,
    SAC and TD3 on a continuous action space).

    SAC needs two more things. Its state-dependent log-std head starts near 0, a spread of 1 *before* the
    tanh: around the status quo that throttles and reroutes at random, far more than TD3's noise of 0.1, and
    the critic learns from little else. The head is set like the mean's, to the actor's ``log_std_init``
    (SB3's default -3, a spread of 0.05; ``policy_kwargs.log_std_init``), and the entropy coefficient then
    moves it. With gSDE, SB3 clips the mean to ``+-clip_mean`` (2) before the tanh, where the clip has no
    gradient; a target beyond it is kept 5% inside (the status quo, 0, lies well inside).
    """
    if not isinstance(model.action_space, spaces.Box):
        return False
    target = np.asarray(actions.status_quo("continuous", n_banks), dtype=np.float64)
    head = getattr(model.policy, "action_net", None)  # Gaussian mean on the box (PPO, A2C, RecurrentPPO)
    squashed = head is None
    if squashed:  # SAC: actor.mu then tanh; TD3: actor.mu = Sequential(..., Linear, Tanh)
        actor = getattr(model, "actor", None)
        mu = getattr(actor, "mu", None)
        head = mu[-2] if isinstance(mu, th.nn.Sequential) else mu
        low, high = model.action_space.low.astype(np.float64), model.action_space.high.astype(np.float64)
        unit = 2.0 * (target - low) / (high - low) - 1.0  # the target in tanh's [-1, 1]
        target = np.arctanh(np.clip(unit, -0.99, 0.99))
        if isinstance(mu, th.nn.Sequential) and isinstance(mu[-1], th.nn.Hardtanh):  # SAC with gSDE: clip_mean
            limit = 0.95 * float(mu[-1].max_val)
            target = np.clip(target, -limit, limit)
    if not isinstance(head, th.nn.Linear) or head.bias is None or head.bias.shape != target.shape:
        return False
    with th.no_grad():
        if squashed:  # SB3 already initialises the Gaussian heads with gain 0.01; the tanh heads it does not
            head.weight.mul_(0.01)
        head.bias.copy_(th.as_tensor(target, dtype=head.bias.dtype))
        log_std = getattr(actor, "log_std", None) if squashed else None
        if isinstance(log_std, th.nn.Linear) and not getattr(actor, "use_sde", False):  # SAC's spread, as above
            log_std.weight.mul_(0.01)
            log_std.bias.fill_(float(actor.log_std_init))
    if squashed and getattr(model, "actor_target", None) is not None:
        model.actor_target.load_state_dict(model.actor.state_dict())  # TD3's target starts equal to its actor
    return True
