"""agents.analysis.throttle_memory: the router with and without its throttle's memory on scheduled outages."""

from __future__ import annotations

import numpy as np

from agents.analysis.throttle_memory import main, variant_failures


def test_the_routers_throttle_memory_costs_payments_after_scheduled_outages() -> None:
    """Two outage-drill nights: the shorter the throttle's memory, the fewer payments fail; none is fewest."""
    rates = {label: np.mean(r) for label, r in variant_failures("outage_drill", episodes=2).items()}
    assert rates["unthrottled_router"] < rates["success_rate_router, 30 s throttle window"]
    assert rates["success_rate_router, 30 s throttle window"] < rates["success_rate_router"]
    assert rates["admit_all"] < rates["sre_throttle"]


def test_the_command_prints_a_row_per_variant_and_refuses_bad_input(capsys) -> None:
    assert main(["--scenario", "outage_drill", "--episodes", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 5 and rows[1].startswith("| success_rate_router |")
    assert main(["--episodes", "0"]) == 2
    assert "episodes = 0: expected at least 1" in capsys.readouterr().err
    assert main(["--scenario", "nowhere"]) == 2
