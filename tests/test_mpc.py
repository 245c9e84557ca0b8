"""Model-predictive control with the fluid LP (agents.analysis.mpc): re-plans from the true state, deterministic."""

from __future__ import annotations

from typing import Any

import pytest

from agents.analysis import mpc
from agents.analysis.open_loop import plan_failed_rates, plan_from_bound


def test_without_a_replan_mpc_plays_the_open_loop_plan(tiny: str) -> None:
    # one block as long as the 200-second slice: the controller solves once, from the reset state, and
    # plays the LP's plan without feedback, exactly what the open-loop plan does on the same seed
    r = mpc.mpc_episode(tiny, seed=3, capacity_factor=0.9, block_s=200.0)
    assert r.solves == 1
    plan = plan_from_bound(tiny, capacity_factor=0.9, cuts=True)
    assert r.failed_rate == pytest.approx(plan_failed_rates(plan.controls[None], plan.block_steps, tiny, [3])[0])


def test_mpc_replans_every_block_and_is_deterministic(tiny: str) -> None:
    r = mpc.mpc_episode(tiny, seed=3, capacity_factor=0.9, block_s=50.0)
    assert r.solves == 4  # 200 s in blocks of 50 s
    assert 0.0 < r.failed_rate < 1.0 and r.outage_minutes >= 0.0
    again = mpc.mpc_episode(tiny, seed=3, capacity_factor=0.9, block_s=50.0)
    assert again.failed_rate == r.failed_rate
    open_loop = mpc.mpc_episode(tiny, seed=3, capacity_factor=0.9, block_s=200.0)
    assert r.failed_rate != open_loop.failed_rate  # the re-plans changed what was played


def test_each_replan_starts_from_the_live_state(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def recording(*args: object, state: Any = None, **kwargs: Any) -> Any:
        seen.append((int(state.t[0]), float(state.queue[0].sum()), float(state.lost[0])))
        return plan_from_bound(*args, state=state, **kwargs)

    monkeypatch.setattr(mpc, "plan_from_bound", recording)
    mpc.mpc_episode(tiny, seed=3, capacity_factor=0.9, block_s=50.0)
    assert [t for t, _, _ in seen] == [0, 10, 20, 30]  # 5-second steps, a re-plan every 50 s
    assert seen[0][1:] == (0.0, 0.0) and all(queued > 0 for _, queued, _ in seen[1:])
    assert [lost for *_, lost in seen] == sorted(lost for *_, lost in seen)  # the episode's own counters


def test_cli(tiny: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert mpc.main(["--scenario", tiny, "--seeds", "3", "4", "--block-s", "100"]) == 0
    out = capsys.readouterr().out
    assert "seed 3: failed" in out and "seed 4: failed" in out and "mean failed" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "-1"], "--seeds must be >= 0; got -1"),
        (["--capacity", "0"], "--capacity must be in (0, 1]; got 0.0"),
        (["--capacity", "nan"], "--capacity must be in (0, 1]; got nan"),
        (["--block-s", "inf"], "--block-s must be a finite number of seconds > 0; got inf"),
        (["--layer-s", "0"], "--layer-s must be a finite number of seconds > 0; got 0.0"),
        (["--scenario", "no_such_world"], "no_such_world"),
    ],
)
def test_cli_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert mpc.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
