"""Open-loop plans (agents.analysis.open_loop): plan <-> actions, replaying a policy, cross-entropy search, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import bank, scenario_dict

from agents.analysis import open_loop
from agents.analysis.open_loop import (
    Plan,
    PlanPolicy,
    continuous_actions,
    cross_entropy_search,
    margin_search,
    plan_from_bound,
    plan_from_policy,
)
from agents.deciders.heuristics import AdmitAll
from agents.evaluation import run_policy
from payroute_env import actions as env_actions
from payroute_env.scenario import load_scenario, scenario_from_dict

SEEDS = [3, 4]


def _rates(policy, scenario: str, seeds: list[int]) -> list[float]:
    return [e["failed_payment_rate"] for e in run_policy(policy, scenario, seeds, timeline=False).episodes]


@pytest.mark.parametrize(
    "controls",
    [np.zeros((2, 6)), np.zeros((0, 6, 3)), np.full((2, 6, 3), 1.5), np.full((2, 6, 3), np.nan)],
    ids=["2d", "no blocks", "above 1", "nan"],
)
def test_plan_rejects_bad_controls(controls: np.ndarray) -> None:
    with pytest.raises(ValueError, match="plan controls"):
        Plan(12, controls)


def test_plan_rejects_bad_block_length() -> None:
    with pytest.raises(ValueError, match="block_steps"):
        Plan(0, np.ones((1, 6, 3)))


def test_continuous_actions_decode_to_the_plan() -> None:
    controls = np.array([[[0.8, 0.5, 0.25], [1.0, 0.0, 1.0], [0.3, 1.0, 0.0]]])  # 1 block, 3 banks
    a = continuous_actions(controls[0])[None]
    admit, route = env_actions.decode("continuous", a, 3, np.ones((1, 3)), np.zeros((1, 3, 3)))
    np.testing.assert_allclose(admit[0], [0.8, 1.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(route[0], [[0.5, 0.125, 0.375], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-6)


def test_plan_of_a_constant_policy_replays_it_exactly() -> None:
    """admit_all never changes its control, so its plan is the same control and the same episodes."""
    plan = plan_from_policy("admit_all", "steady", seed=0, block_steps=12)
    np.testing.assert_array_equal(plan.controls, np.ones_like(plan.controls))
    assert plan.controls.shape[0] == -(-load_scenario("steady").n_steps // 12)
    assert _rates(PlanPolicy(plan), "steady", SEEDS) == _rates(AdmitAll("steady"), "steady", SEEDS)


def test_plan_policy_counts_steps_and_restarts_with_the_episode() -> None:
    controls = np.ones((3, 1, 3))
    controls[:, 0, 0] = [0.2, 0.5, 0.9]  # admit rate by block
    pol = PlanPolicy(Plan(2, controls))
    obs = np.zeros((2, 32))
    seen = [pol.predict(obs)[0][:, 0] + 1 for _ in range(7)]  # admit = 1 + the action's admit component
    # steps 0..6: blocks 0,0,1,1,2,2, then the last block
    np.testing.assert_allclose([s[0] for s in seen], [0.2, 0.2, 0.5, 0.5, 0.9, 0.9, 0.9], atol=1e-6)
    restarted = pol.predict(obs, episode_start=np.array([True, False]))[0][:, 0] + 1
    np.testing.assert_allclose(restarted, [0.2, 0.9], atol=1e-6)


def test_plan_for_another_bank_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"need shape \(M, n_blocks, 6, 3\)"):
        open_loop.plan_failed_rates(np.ones((1, 2, 3, 3)), 12, "steady", SEEDS)


def test_plan_round_trips_through_a_file(tmp_path: Path) -> None:
    plan = Plan(5, np.random.default_rng(0).random((4, 2, 3)))
    plan.save(tmp_path / "plan.npz")
    again = Plan.load(tmp_path / "plan.npz")
    assert again.block_steps == 5
    np.testing.assert_array_equal(again.controls, plan.controls)


def test_plan_from_bound_follows_the_lp() -> None:
    """100/s of quick-enabled users against quick 60/s and a switch of 40/s: the LP splits 60/40, throttles nothing."""
    sturdy = bank(quick_capacity=60.0, quick_declared=60.0, netbank_capacity=0.0, netbank_declared=0.0)
    data = scenario_dict([sturdy], dt_s=5.0, end_s=600.0)
    data["switch"].update(capacity=40.0, declared=40.0)
    plan = plan_from_bound(scenario_from_dict(data), layer_s=60.0)
    assert plan.block_steps == 12 and plan.controls.shape == (10, 1, 3)
    np.testing.assert_allclose(plan.controls[:, 0, 0], 1.0)  # admit everything
    shares = plan.controls[:-1, 0, 1]  # the last layer may leave its end queue anywhere
    assert shares.mean() == pytest.approx(0.6, abs=0.03), shares
    np.testing.assert_allclose(plan.controls[:-1, 0, 2], 1.0)  # the rest goes to the switch, none to netbank


def test_plan_from_bound_with_a_margin_plans_for_the_smaller_capacities() -> None:
    """capacity_factor f gives the plan of the same scenario with every capacity multiplied by f."""

    def world(f: float) -> dict:
        tight = bank(quick_capacity=60.0 * f, quick_declared=60.0, netbank_capacity=30.0 * f, netbank_declared=30.0,
                     quick_share=0.7, netbank_success=0.6)  # fmt: skip
        data = scenario_dict([tight], dt_s=5.0, end_s=600.0)
        data["switch"].update(capacity=40.0 * f, declared=40.0)
        data["balance"].update(capacity=data["balance"]["capacity"] * f)
        return data

    for cuts in (False, True):
        margin = plan_from_bound(scenario_from_dict(world(1.0)), layer_s=60.0, capacity_factor=0.5, cuts=cuts)
        smaller = plan_from_bound(scenario_from_dict(world(0.5)), layer_s=60.0, cuts=cuts)
        np.testing.assert_allclose(margin.controls, smaller.controls, atol=1e-6)
        full = plan_from_bound(scenario_from_dict(world(1.0)), layer_s=60.0, cuts=cuts)
        assert np.abs(full.controls - margin.controls).max() > 0.1  # the margin changes the plan
    with pytest.raises(ValueError, match="capacity_factor"):
        plan_from_bound(scenario_from_dict(world(1.0)), capacity_factor=1.5)


def _one_bank_world(bank_core: float = 1.0, switch: float = 1.0, balance: float = 1.0) -> dict:
    """One fragile bank (quick 60/s, online banking 30/s), a switch of 40/s and balance, capacities scaled."""
    tight = bank(quick_capacity=60.0 * bank_core, quick_declared=60.0, netbank_capacity=30.0 * bank_core,
                 netbank_declared=30.0, quick_share=0.7, netbank_success=0.6,
                 fragility={"collapse_s": 30.0, "relax_s": 30.0})  # fmt: skip
    data = scenario_dict([tight], dt_s=5.0, end_s=600.0)
    data["traffic"]["base_rate"] = 120.0
    data["switch"].update(capacity=40.0 * switch, declared=40.0)
    data["balance"].update(capacity=data["balance"]["capacity"] * balance)
    return data


def test_a_margin_per_server_scales_that_servers_channels() -> None:
    """One number per server (the bank's core: its quick and online-banking channels; the switch; balance)."""
    world = scenario_from_dict(_one_bank_world())
    for factors, scaled in [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((1.0, 0.5, 1.0), (1.0, 0.5, 1.0)),
                            ((0.6, 1.0, 1.0), (0.6, 1.0, 1.0))]:  # fmt: skip
        for cuts in (False, True):
            margin = plan_from_bound(world, layer_s=60.0, capacity_factor=factors, cuts=cuts)
            smaller = plan_from_bound(scenario_from_dict(_one_bank_world(*scaled)), layer_s=60.0, cuts=cuts)
            np.testing.assert_allclose(margin.controls, smaller.controls, atol=1e-6)
    uniform = plan_from_bound(world, layer_s=60.0, capacity_factor=0.5, cuts=True)
    per_server = plan_from_bound(world, layer_s=60.0, capacity_factor=[0.5, 0.5, 0.5], cuts=True)
    np.testing.assert_array_equal(uniform.controls, per_server.controls)
    switch_only = plan_from_bound(world, layer_s=60.0, capacity_factor=[1.0, 0.5, 1.0], cuts=True)
    assert np.abs(switch_only.controls - plan_from_bound(world, layer_s=60.0, cuts=True).controls).max() > 0.05


@pytest.mark.parametrize(
    "factor, message",
    [
        (
            [0.9, 0.9],
            r"capacity_factor = \[0.9, 0.9\]: expected one number or 3 numbers \(one per bank core, then "
            r"the switch and balance\), each in \(0, 1\]",
        ),
        ([0.9, 0.0, 1.0], r"capacity_factor = \[0.9, 0.0, 1.0\]: expected one number or 3 numbers"),
        ([0.9, np.nan, 1.0], r"capacity_factor = \[0.9, nan, 1.0\]: expected one number or 3 numbers"),
        ("lots", r"capacity_factor = 'lots': expected a number in \(0, 1\]"),
        ("0.5", r"capacity_factor = '0.5': expected a number in \(0, 1\]"),
    ],
)
def test_a_bad_margin_is_named(factor: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_from_bound(scenario_from_dict(_one_bank_world()), capacity_factor=factor)  # type: ignore[arg-type]


def test_margin_search_keeps_the_best_margins_it_scored() -> None:
    world = scenario_from_dict(_one_bank_world())
    seeds = [3, 4]
    seen: list[tuple[float, float]] = []
    margins, history = margin_search(world, seeds, start=0.9, iterations=2, population=4, sigma=0.1, seed=1,
                                     on_iteration=lambda i, best, mean: seen.append((best, mean)))  # fmt: skip
    assert margins.shape == (3,) and margins[-1] == 1.0 and ((margins >= 0.5) & (margins <= 1.0)).all()
    assert len(history) == 2 and history[1] <= history[0]
    start = plan_from_bound(world, capacity_factor=0.9, cuts=True)
    start_rate = open_loop.plan_failed_rates(start.controls[None], start.block_steps, world, seeds)[0]
    assert seen[0][1] == pytest.approx(start_rate)  # the first population's mean is the start
    assert history[-1] <= start_rate
    best = plan_from_bound(world, capacity_factor=margins, cuts=True)
    found = open_loop.plan_failed_rates(best.controls[None], best.block_steps, world, seeds)[0]
    assert found == pytest.approx(history[-1])  # the margins returned are the ones that scored best
    with pytest.raises(ValueError, match=r"start = 0.3: the margins are searched in \[0.5, 1\]"):
        margin_search(world, seeds, start=0.3)


def test_search_improves_a_bad_plan_and_keeps_the_best() -> None:
    """Everything through the online-banking redirect (success 0.6) is far from best; the search finds better."""
    B = load_scenario("steady").n_banks
    bad = Plan(124, np.tile([1.0, 0.0, 0.0], (6, B, 1)))  # admit all, quick share 0, no switch: netbank
    start = open_loop.plan_failed_rates(bad.controls[None], bad.block_steps, "steady", SEEDS)[0]
    best, history = cross_entropy_search(bad, "steady", SEEDS, iterations=3, population=8, sigma=0.4, seed=1)
    assert len(history) == 3 and all(b >= a for a, b in zip(history[1:], history, strict=False))
    found = open_loop.plan_failed_rates(best.controls[None], best.block_steps, "steady", SEEDS)[0]
    assert found == pytest.approx(history[-1])
    assert found < start - 0.01, (found, start)
    np.testing.assert_array_equal(best.controls[..., 0], bad.controls[..., 0])  # admit was not searched


def test_cli_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.npz"
    argv = ["--scenario", "steady", "--init", "admit_all", "--iterations", "1", "--population", "4"]
    assert open_loop.main([*argv, "--search-seeds", "1", "--episodes", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "plan after the search" in text and "its open-loop plan" in text
    assert Plan.load(out).controls.shape[1] == load_scenario("steady").n_banks


@pytest.mark.slow
def test_cli_searches_margins(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--scenario", "steady", "--init", "bound", "--bound-cuts", "--bound-capacity", "0.9", "--search-margins"]
    assert (
        open_loop.main([*argv, "--iterations", "1", "--population", "2", "--search-seeds", "1", "--episodes", "2"]) == 0
    )
    text = capsys.readouterr().out
    names = [bank.name for bank in load_scenario("steady").banks]
    assert f"margins found: {names[0]} " in text and "switch" in text and "balance 1.000" in text
    assert "plan after the search" in text and "its open-loop plan" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--init", "no_such_policy"], "no_such_policy"),
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--init", "bound", "--bound-capacity", "0"], "--bound-capacity must be a share of capacity in (0, 1]"),
        (["--init", "bound", "--bound-capacity", "nan"], "--bound-capacity must be a share of capacity in (0, 1]"),
        (["--init", "admit_all", "--bound-cuts"], "--bound-cuts and --bound-capacity need --init bound"),
        (["--init", "admit_all", "--bound-capacity", "1"], "--bound-cuts and --bound-capacity need --init bound"),
        (["--init", "admit_all", "--init-seed", "1003"], "--init-seed 1003 is one of the evaluation seeds"),
        (["--init", "bound", "--search-margins"], "--search-margins needs --init bound --bound-cuts"),
        (
            ["--init", "bound", "--bound-cuts", "--search-margins", "--search-admit"],
            "--search-admit searches a plan's admit rates; --search-margins searches margins instead: choose one",
        ),
        (
            ["--init", "bound", "--bound-cuts", "--bound-capacity", "0.3", "--search-margins"],
            "--search-margins searches margins in [0.5, 1]; --bound-capacity 0.3 is outside",
        ),
        (["--population", "1"], "--population must be >= 2"),
        (["--sigma", "nan"], "--sigma must be a finite number >= 0"),
        (["--block-s", "inf"], "--block-s must be a finite number of seconds > 0"),
        (["--block-s", "0"], "--block-s must be a finite number of seconds > 0"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--eval-seed", "5", "--episodes", "3"], "evaluation seeds 5..7 overlap the search seeds 7..10"),
        (["--out", "/nonexistent/folder/plan.npz"], "folder /nonexistent/folder does not exist or is not writable"),
        # found by fuzzing: a set of 10**30 seeds was built (out of memory), numpy's dimension limit, a range overflow
        (["--search-seeds", str(10**30), "--eval-seed", "0", "--init-seed", "5"], "seeds must be below 2**64"),
        (["--population", str(10**15)], "x --search-seeds 4 episodes in one batch: 9.95e+07 TiB)"),
        (["--episodes", str(10**15)], "lower --episodes"),
    ],
)
def test_cli_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert open_loop.main(["--scenario", "steady", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_block_longer_than_the_night_is_one_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--block-s 1e308`` was a numpy casting traceback (found by fuzzing every flag); it is the whole night."""
    out = tmp_path / "plan.npz"
    argv = ["--scenario", "steady", "--init", "admit_all", "--block-s", "1e308", "--iterations", "1",
            "--population", "2", "--search-seeds", "1", "--episodes", "1", "--out", str(out)]  # fmt: skip
    assert open_loop.main(argv) == 0, capsys.readouterr().err
    plan = Plan.load(out)
    assert plan.block_steps == load_scenario("steady").n_steps and plan.controls.shape[0] == 1
