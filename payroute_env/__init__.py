"""payroute: a Gymnasium environment for payment routing and throttling under a Double 11 traffic surge.

``import payroute_env`` registers the environments below with Gymnasium, each with a ``vector_entry_point``
(``gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")`` gives a batched
``PaymentRoutingVectorEnv``):

=============================== ======================
id                              scenario
=============================== ======================
``payroute/Double11-2013-v0``   ``double11_2013``
``payroute/Double11-2016-v0``   ``double11_2016``
``payroute/Steady-v0``          ``steady``
``payroute/FlashSales-v0``      ``flash_sales``
``payroute/OutageDrill-v0``     ``outage_drill``
``payroute/Randomized-v0``      ``randomized``
``payroute/PaymentRouting-v0``  ``scenario=`` (name or TOML path)
=============================== ======================
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from .env import PaymentRoutingEnv
from .scenario import BUILTIN_SCENARIOS, Scenario, ScenarioError, load_scenario

__all__ = [
    "ENV_IDS",
    "BUILTIN_SCENARIOS",
    "PaymentRoutingEnv",
    "Scenario",
    "ScenarioError",
    "env_id_for",
    "load_scenario",
]
__version__ = "0.1.0"

ENV_IDS: dict[str, str | None] = {
    "payroute/Double11-2013-v0": "double11_2013",
    "payroute/Double11-2016-v0": "double11_2016",
    "payroute/Steady-v0": "steady",
    "payroute/FlashSales-v0": "flash_sales",
    "payroute/OutageDrill-v0": "outage_drill",
    "payroute/Randomized-v0": "randomized",
    "payroute/PaymentRouting-v0": None,
}


def env_id_for(scenario: str) -> str:
    """The registered id of a built-in scenario (``payroute/PaymentRouting-v0`` for TOML files)."""
    for env_id, name in ENV_IDS.items():
        if name == scenario:
            return env_id
    return "payroute/PaymentRouting-v0"


for _env_id, _scenario in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="payroute_env.env:PaymentRoutingEnv",
            vector_entry_point="payroute_env.vector_env:PaymentRoutingVectorEnv",
            kwargs={} if _scenario is None else {"scenario": _scenario},
        )
