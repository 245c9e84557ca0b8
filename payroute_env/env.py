"""``PaymentRoutingEnv``: one payment platform on one surge evening, as a Gymnasium environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from . import core, render
from .scenario import Scenario
from .simulator import RewardWeights, Simulator

__all__ = ["PaymentRoutingEnv"]


class PaymentRoutingEnv(RewardWeights, gym.Env):
    """Route and throttle payment attempts to banks during a Double 11 surge.

    A payment platform receives payment intents and must send each attempt to the card's bank: through the
    bank's quick-payment API (``quick``), its online-banking redirect (``netbank``) or the shared cross-bank
    network (``switch``); balance payers use the platform's own balance. Banks have limited, partly unknown
    capacity; overloaded bank cores degrade and go down; users retry, switch card or give up. Each step
    (``dt`` = 5 s by default) the agent sets, per bank, how many attempts to admit and how to route them.
    The dynamics are in ``payroute_env.core`` and ``docs/MODEL.md``.

    ## Action space (``action_mode``; B = number of banks, 6 in every built-in scenario)

    | mode | space | per bank b |
    |---|---|---|
    | ``continuous`` (default) | ``Box(-1, 1, (4B,), float32)``, zero = status quo | index ``4b``: admit rate ``clip(1 + a, 0, 1)``, ``4b+1``: weight quick ``clip(1 + a, 0, 2)``, ``4b+2``: weight switch ``clip(a, 0, 1)``, ``4b+3``: weight netbank ``clip(a, 0, 1)`` |
    | ``multidiscrete`` | ``MultiDiscrete([11, 5] * B)`` | index ``2b``: admit level (rate = level / 10), ``2b+1``: route preset (quick, 75/25 quick/switch, 50/50, switch, netbank) |
    | ``discrete`` | ``Discrete(1 + 4B)`` | 0: no change; ``1+4b``: admit +0.1, ``2+4b``: admit -0.1, ``3+4b``: next preset, ``4+4b``: previous preset |

    The admit rate is the share of the bank's new and retrying attempts let through this step; the rest
    get "busy, try later" (a failed attempt). Route weights are normalised over the three channels and
    apply to quick-enabled users; all-zero weights mean "quick". Online-banking-only users always use
    ``netbank``. Continuous values outside [-1, 1] are clipped; a wrong shape, NaN or an out-of-range
    integer raises ``ValueError``. The zero action is the 2013 status quo (admit all, quick-enabled users to
    quick), as SB3's convention of a symmetric box centred on the neutral action asks; ``actions.encode`` turns
    admit rates and route shares into actions.

    ## Observation space: ``Box(0, 1e6, (28B + 4,), float32)``

    Counts are per step, scaled by ``B / norm`` (``norm`` = expected intents in the busiest step), clipped
    at 1e6.

    | index | feature |
    |---|---|
    | ``28b + 0`` | attempts offered for bank b (new and retrying) |
    | ``28b + 1`` | attempts throttled ("busy, try later") |
    | ``28b + 2`` | users known to be waiting to retry with bank b |
    | ``28b + 3 + 7r + f`` | for route r (0 quick, 1 switch for bank b's cards, 2 netbank) and field f: 0 sent, 1 succeeded, 2 declined, 3 timed out, 4 rejected, 5 queue depth, 6 queue wait / channel timeout |
    | ``28b + 24`` | admit rate applied in the last step |
    | ``28b + 25 .. 27`` | route split applied in the last step (quick, switch, netbank) |
    | ``28B + 0 .. 2`` | balance: attempts sent, succeeded, queue depth |
    | ``28B + 3`` | episode progress in [0, 1] |

    With ``observe_internal=True`` (ablations only; a real platform cannot see these) ``6B + 5`` values
    follow: per bank stress, down (0/1), outage time left (hours), warm-up factor, true/declared capacity of
    quick and of netbank; then the same five for the switch. ``payroute_env.observations.feature_names``
    names every index.

    ## Reward

    ``-(lost_weight * intents_lost + beta * failed_attempts) / norm`` per step, with ``lost_weight = 1``
    and ``beta = 0.1`` by default (constructor options). Rewards are O(1) at the peak.

    ## Episode start and end

    | | |
    |---|---|
    | start | the scenario's ``start_s`` (23:58 for ``double11_2013``), empty queues, healthy banks, status-quo control; randomised scenarios draw their peak, capacities, shares and fragility here |
    | termination | never |
    | truncation | after ``(end_s - start_s) / dt_s`` steps (744 for ``double11_2013``) |

    ## Info

    Every step: integer episode-cumulative ``arrived``, ``succeeded``, ``lost``, ``in_flight`` (intents;
    ``arrived == succeeded + lost + in_flight``), ``attempts`` and ``failed_attempts``. The final step adds
    ``episode_kpis`` (``payroute_env.metrics.episode_kpis``): ``failed_payment_rate`` and per bank,
    ``attempt_failure_rate``, ``successful_payments_per_s``, median and ``p95_time_to_success_s``,
    ``outage_seconds`` per bank, ``paid_share_by_channel``, ``pending_at_end``.

    ## Options (constructor keyword arguments)

    | option | default | meaning |
    |---|---|---|
    | ``scenario`` | ``"double11_2013"`` | built-in name, path to a TOML file, or a ``Scenario`` |
    | ``action_mode`` | ``"continuous"`` | see above |
    | ``observe_internal`` | ``False`` | append hidden server state to the observation |
    | ``beta`` | ``0.1`` | reward weight of a failed attempt |
    | ``lost_weight`` | ``1.0`` | reward weight of a lost intent |
    | ``render_mode`` | ``None`` | ``"ansi"``: a text dashboard of the last step; ``"rgb_array"``: the same as a ``uint8 [H, W, 3]`` frame, with the failed-payment rate so far on a timeline (``payroute_env.render``) |

    ``beta`` and ``lost_weight`` are also attributes that may be changed between steps, e.g. to anneal the
    reward: ``env.unwrapped.beta = 0.0`` (on a wrapper the assignment would only set the wrapper's own
    attribute), ``vector_env.beta = 0.0``, or SB3's ``set_attr("beta", 0.0)`` on ``PaymentRoutingSB3VecEnv``
    or on a ``DummyVecEnv`` of unwrapped environments.

    ``reset(seed=s)`` fixes the episode's random stream; ``reset()`` without a seed continues to the next
    episode of the same stream. ``reset`` takes no options.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        scenario: str | Path | Scenario = "double11_2013",
        action_mode: str = "continuous",
        observe_internal: bool = False,
        beta: float = 0.1,
        lost_weight: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None, 'ansi' or 'rgb_array'; got {render_mode!r}")
        self.sim = Simulator(scenario, 1, action_mode, observe_internal, beta, lost_weight)
        self.scenario = self.sim.scenario
        self.action_mode = self.sim.action_mode
        self.observe_internal = self.sim.observe_internal
        self.render_mode = render_mode
        self._timelines = None  # the frames' failed-rate timeline, kept only when frames are drawn
        if render_mode == "rgb_array":
            self._timelines = render.FailedRateTimelines(1, self.sim.params.n_steps)
        self.action_space = self.sim.single_action_space
        self.observation_space = self.sim.single_observation_space

    @property
    def params(self) -> core.CoreParams:
        return self.sim.params

    @property
    def state(self) -> core.CoreState | None:
        """The core state of this environment (a batch of one)."""
        return self.sim.state

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"reset takes no options; got {sorted(options)}")
        obs = self.sim.reset([seed], entropy=self.np_random)
        return obs[0], self.sim.counters(0)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action)
        if action.shape != self.action_space.shape:  # checked here so the message shows the user's shape
            raise ValueError(f"{self.action_mode} action must have shape {self.action_space.shape}; got {action.shape}")
        self.sim.advance(action[None])
        obs, reward, truncated, counters = self.sim.outcome(0)
        info: dict[str, Any] = counters
        if truncated:
            info["episode_kpis"] = self.sim.kpis(0)
        return obs, reward, False, truncated, info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            return None
        if self.sim.state is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "rgb_array":
            return self._timelines.frame(self.params, self.sim.state, 0)
        return render.ansi(self.params, self.sim.state, 0)
