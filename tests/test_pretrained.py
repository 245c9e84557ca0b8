"""Shipped pretrained agents load by name with no training and still score what their cards say; the tool that
ships one writes a card that is its own measurement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import evaluate
import train
from agents.deciders import PolicyError, available_policies, load_policy
from agents.deciders.pretrained import PRETRAINED_DIR, pretrained_agents, pretrained_card, pretrained_model
from agents.evaluation.runner import run_policy
from agents.training import ship

SHIPPED = sorted(pretrained_agents())


def test_the_agents_the_generalist_issue_names_are_shipped() -> None:
    assert "default_2013" in SHIPPED  # the 2013 default agent (python train.py)
    assert {f"pretrained:{name}" for name in SHIPPED} <= set(available_policies())  # evaluate.py --list shows them


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_agent_loads_without_trust_and_reproduces_its_card(name: str) -> None:
    """Two episodes of the card's check: a change of the simulator that silently invalidates the agent fails."""
    card = pretrained_card(name)
    assert pretrained_model(name).stat().st_size < ship.MAX_MODEL_BYTES  # under 1 MB with its statistics
    for key in ("command", "algorithm", "training", "results", "machine", "commit"):
        assert card[key], key
    assert card["training"]["timesteps"] > 0 and isinstance(card["training"]["seed"], int)
    check = card["check"]
    policy = load_policy(f"pretrained:{name}", check["world"])  # trust=False: nothing in the file runs
    assert policy.name == f"pretrained:{name}"
    measured = [e["failed_payment_rate"] for e in run_policy(policy, check["world"], check["seeds"]).episodes]
    # ship.py measured the check as this batch of two (float32 batched products round differently with the batch
    # size, and one intent's difference can drift a trajectory by a tenth of a percent): the same figures, up to a
    # CPU whose float32 kernels round differently from the one that wrote the card
    np.testing.assert_allclose(measured, check["failed_payment_rate"], rtol=1e-6, atol=0)
    first = next(r for r in card["results"] if r["world"] == check["world"])
    assert first["episodes"] >= 20 and first["best_heuristic"] and first["fluid_bound"] is not None
    assert (PRETRAINED_DIR / name / "card.md").read_text(encoding="utf-8") == ship.card_markdown(card)


def test_evaluate_cli_takes_a_shipped_agent_by_name(tmp_path: Path, capsys) -> None:
    name = SHIPPED[0]
    argv = ["--scenario", "steady", "--policies", f"admit_all,pretrained:{name}", "--episodes", "2", "--out",
            str(tmp_path / "out"), "--no-plots", "--no-bound"]  # fmt: skip
    assert evaluate.main(argv) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [p["name"] for p in saved["policies"]] == ["admit_all", f"pretrained:{name}"]
    assert f"pretrained:{name}" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["no_such_agent", "", "../default_2013", "..", ".hidden", "default_2013/"])
def test_an_unknown_or_outside_name_is_refused_naming_the_shipped_agents(bad: str) -> None:
    with pytest.raises(PolicyError, match=r"unknown pretrained agent .*; shipped: .*default_2013"):
        load_policy(f"pretrained:{bad}", "double11_2013")


def _tiny_run(tiny: str, out: Path) -> Path:
    """A train.py run of 64 steps on the tiny world: a model to ship, not a good one."""
    argv = ["--scenario", tiny, "--timesteps", "64", "--n-envs", "2", "--out", str(out), "--no-eval", "--no-progress",
            "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1"]  # fmt: skip
    assert train.main(argv) == 0
    return out / "ppo-tiny-seed0"


def test_ship_writes_a_card_that_is_its_own_measurement(tiny: str, tmp_path: Path) -> None:
    run = _tiny_run(tiny, tmp_path / "runs")
    folder = tmp_path / "pretrained"
    card = ship.ship_agent(run, "tiny_agent", "a test agent", "python train.py --scenario tiny", worlds=[tiny],
                           episodes=3, folder=folder, progress=False)  # fmt: skip
    assert (folder / "tiny_agent" / "model.zip").read_bytes() == (run / "model.zip").read_bytes()
    assert json.loads((folder / "tiny_agent" / "card.json").read_text()) == card
    assert (folder / "tiny_agent" / "card.md").read_text() == ship.card_markdown(card)
    row = card["results"][0]
    assert row["episodes"] == 3 and row["first_seed"] == 1000 and card["training"]["timesteps"] == 64
    # the card's figures are a fresh evaluation of the copied model, episode by episode
    policy = load_policy(folder / "tiny_agent" / "model.zip", tiny)
    episodes = run_policy(policy, tiny, [1000, 1001, 1002]).episodes
    rates = [e["failed_payment_rate"] for e in episodes]
    pair = run_policy(policy, tiny, [1000, 1001]).episodes  # the check is its own batch of two, as the test runs it
    assert card["check"] == {"world": tiny, "seeds": [1000, 1001],
                             "failed_payment_rate": [e["failed_payment_rate"] for e in pair]}  # fmt: skip
    assert row["failed_payment_rate"] == pytest.approx(np.mean(rates), rel=1e-4)
    heuristic = load_policy(row["best_heuristic"], tiny)
    best = np.mean([e["failed_payment_rate"] for e in run_policy(heuristic, tiny, [1000, 1001, 1002]).episodes])
    assert row["best_heuristic_failed_payment_rate"] == pytest.approx(best)
    closed = (best - row["failed_payment_rate"]) / (best - row["fluid_bound"])
    assert row["gap_closed"] == pytest.approx(closed)
    assert f"| {tiny} | 3 (seeds 1000-1002) | {100 * row['failed_payment_rate']:.2f} |" in ship.card_markdown(card)
    assert card["training"]["init_model"] is None and "starting from" not in ship.card_markdown(card)
    # a curriculum's last stage: the card says which model it started from
    started = {**card, "training": {**card["training"], "init_model": "gen/a/model.zip"}}
    assert "on `" + tiny + "`, starting from `gen/a/model.zip`)" in ship.card_markdown(started)


def test_ship_refuses_what_must_not_ship(tiny: str, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "half").mkdir()
    with pytest.raises(ValueError, match="not a finished train.py run"):
        ship.ship_agent(tmp_path / "half", "x", "d", "c", worlds=[tiny], folder=tmp_path / "p")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.zip").write_bytes(b"x" * 100)
    (run / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="--name '../x'"):
        ship.ship_agent(run, "../x", "d", "c", worlds=[tiny], folder=tmp_path / "p")
    monkeypatch.setattr(ship, "MAX_MODEL_BYTES", 10)
    with pytest.raises(ValueError, match="must be under 1 MB"):
        ship.ship_agent(run, "x", "d", "c", worlds=[tiny], folder=tmp_path / "p")
    assert not (tmp_path / "p").exists()  # nothing written for a refused agent
    assert ship.main([str(tmp_path / "half"), "--name", "x", "--description", "d", "--command", "c"]) == 2


def test_remeasure_rewrites_a_shipped_agents_figures_and_keeps_what_it_is(tiny: str, tmp_path: Path) -> None:
    """A new heuristic or simulator version: the agent is measured again in place, its training run long gone."""
    out = tmp_path / "runs"
    folder = tmp_path / "pretrained"
    shipped = ship.ship_agent(_tiny_run(tiny, out), "tiny_agent", "a test agent", "python train.py", worlds=[tiny],
                              episodes=3, folder=folder, progress=False)  # fmt: skip
    model = (folder / "tiny_agent" / "model.zip").read_bytes()
    shutil.rmtree(out)  # remeasuring needs only the shipped folder
    card = ship.remeasure_agent("tiny_agent", episodes=2, seed=2000, folder=folder, progress=False)
    assert json.loads((folder / "tiny_agent" / "card.json").read_text()) == card
    assert (folder / "tiny_agent" / "card.md").read_text() == ship.card_markdown(card)
    assert (folder / "tiny_agent" / "model.zip").read_bytes() == model
    for kept in ("name", "description", "command", "algorithm", "training"):
        assert card[kept] == shipped[kept], kept
    row = card["results"][0]
    assert row["world"] == tiny and row["episodes"] == 2 and row["first_seed"] == 2000  # the card's worlds
    policy = load_policy(folder / "tiny_agent" / "model.zip", tiny)
    rates = [e["failed_payment_rate"] for e in run_policy(policy, tiny, [2000, 2001]).episodes]
    assert row["failed_payment_rate"] == pytest.approx(np.mean(rates), rel=1e-4)
    assert card["check"] == {"world": tiny, "seeds": [2000, 2001], "failed_payment_rate": rates}
    with pytest.raises(ValueError, match=r"--remeasure 'nobody': no shipped agent .*shipped: tiny_agent"):
        ship.remeasure_agent("nobody", folder=folder)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--remeasure", "x", "--name", "y"], "without run_dir, --name"),
        (["run", "--name", "y"], "missing: --description, --command"),
        ([], "missing: run_dir, --name, --description, --command"),
    ],
)
def test_ship_cli_says_which_of_its_two_uses_it_was_given_wrong(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        ship.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
