"""Studies on Ray Tune: study files checked before anything starts, trials that are train.py runs, the rliable
aggregate against a direct computation, and a two-trial study on local Ray that resumes without re-running."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from rliable import metrics

from agents.studies import StudyError, load_study, run
from agents.studies.__main__ import main
from agents.studies.aggregate import aggregate, markdown_table, probability_of_improvement
from agents.studies.run import trial_points, trial_settings
from agents.studies.spec import study_from_dict
from agents.studies.trial import train_command, trial_request

SHIPPED = Path(__file__).resolve().parents[1] / "agents" / "studies"

TINY = {
    "name": "tiny",
    "algorithms": ["ppo"],
    "train": {"scenarios": ["steady"], "seeds": [0, 1], "timesteps": 256, "n_envs": 2, "eval_episodes": 1,
              "hyperparams": {"n_steps": 64, "batch_size": 64}},
    "evaluate": {"worlds": ["steady"], "episodes": 2, "seed": 5000},
}  # fmt: skip


def changed(path: str, value: object) -> dict:
    study = copy.deepcopy(TINY)
    *parents, key = path.split(".")
    table = study
    for part in parents:
        table = table.setdefault(part, {})
    table[key] = value
    return study


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_the_shipped_studies_load(name: str) -> None:
    spec = load_study(name)
    assert spec.name == name and spec.trials == len(trial_points(spec))


def test_the_paper_study_runs_every_algorithm_on_every_world_with_five_seeds() -> None:
    from payroute_env import BUILTIN_SCENARIOS

    spec = load_study("paper")
    assert set(spec.algorithms) == {"ppo", "a2c", "dqn", "td3", "sac", "recurrent_ppo", "residual_ppo"}
    assert set(spec.worlds) == set(BUILTIN_SCENARIOS) and len(spec.seeds) == 5


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("algorithms", ["ppo", "muzero"], "unknown algorithm 'muzero'"),
        ("algorithms", [], "algorithms = []: expected a non-empty list"),
        ("evaluate.worlds", ["steady", "mars"], "evaluate.worlds: unknown scenario"),
        ("train.scenarios", ["nowhere.toml"], "train.scenarios"),
        ("search.grid", {"learning_rate": []}, "search.grid.learning_rate = []: expected a non-empty list"),
        ("search.sample", {"gamma": {"choice": []}}, "search.sample.gamma.choice = []"),
        ("search.sample", {"learning_rate": {"loguniform": [0.0, 1e-3]}}, "low < high > 0"),
        ("search.sample", {"learning_rate": {"normal": [0, 1]}}, "expected one of"),
        ("search.samples", 3, "search.samples = 3: without search.sample"),
        ("train.seeds", [0, 0], "each seed may appear once"),
        ("train.timesteps", 0, "train.timesteps = 0: expected a whole number >= 1"),
        ("evaluate.episodes", 1.5, "evaluate.episodes = 1.5"),
        ("train.colour", "red", "unknown field train.'colour'"),
        ("name", "a/b", "name = 'a/b'"),
        ("search.searcher", "hyperband", "search.searcher = 'hyperband'; choose from random, optuna"),
        ("search", {"searcher": "optuna", "grid": {"gamma": [0.9]}}, "searches search.sample"),
    ],
)
def test_a_bad_study_is_refused_naming_the_field(path: str, value: object, message: str) -> None:
    with pytest.raises(StudyError, match=None) as err:
        study_from_dict(changed(path, value), "bad.yml")
    assert str(err.value).startswith("bad.yml: ") and message in str(err.value), str(err.value)


def test_the_command_refuses_bad_input_in_one_line_before_any_trial(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(changed("algorithms", ["muzero"])))
    good = tmp_path / "tiny.yml"
    good.write_text(yaml.safe_dump(TINY))
    png = tmp_path / "frame.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    for argv, message in (
        ([str(bad)], "unknown algorithm 'muzero'"),
        ([str(tmp_path / "missing.yml")], "cannot read the study file"),
        ([str(png)], "not a text file (a study file is UTF-8 YAML)"),  # was a UnicodeDecodeError
        ([str(good), "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: cannot reach it"),
        ([str(good), "--address", "nowhere"], "expected auto, host:port or ray://host:port"),
        ([str(good), "--resume", "--out", str(tmp_path / "none")], "holds no study to continue"),
        ([str(good), "--out", " "], "--out is empty"),
    ):
        assert main([*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("python -m agents.studies: error:"), err
        assert message in err, err
    assert not (tmp_path / "out").exists()


def test_a_ray_client_that_times_out_with_a_local_token_file_is_told_about_token_authentication(
    tmp_path: Path, monkeypatch
) -> None:
    def timed_out(**kwargs: object) -> None:
        raise ConnectionError("ray client connection timeout")

    listener = socket.create_server(("127.0.0.1", 0))  # the reachability check passes; Ray's client "times out"
    address = f"ray://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setattr(run.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(run.ray, "init", timed_out)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    try:
        monkeypatch.setattr(run, "TOKEN_FILE", tmp_path / "auth_token")  # no token here: no hint
        with pytest.raises(StudyError) as err:
            run.connect(address)
        assert str(err.value) == f"--address {address}: ray client connection timeout"
        (tmp_path / "auth_token").write_text("secret")
        with pytest.raises(StudyError) as err:
            run.connect(address)
        assert str(err.value).endswith("(if the cluster uses token authentication, run with RAY_AUTH_MODE=token)")
        monkeypatch.setenv("RAY_AUTH_MODE", "token")  # told already: the error stays Ray's
        with pytest.raises(StudyError) as err:
            run.connect(address)
        assert "RAY_AUTH_MODE" not in str(err.value)
    finally:
        listener.close()


def test_every_seed_trains_the_same_draw_and_a_trial_is_a_train_py_command() -> None:
    spec = study_from_dict(
        changed("search", {"sample": {"learning_rate": {"loguniform": [1e-4, 1e-3]}}, "samples": 3,
                           "grid": {"gamma": [0.99, 0.995]}}), "s.yml"
    )  # fmt: skip
    points = trial_points(spec)
    assert len(points) == spec.trials == 1 * 1 * 2 * 3 * 2
    by_label: dict[str, set[int]] = {}
    for p in points:
        by_label.setdefault(p["label"], set()).add(p["seed"])
        assert 1e-4 <= p["searched"]["learning_rate"] <= 1e-3
    assert len(by_label) == 6 and all(seeds == {0, 1} for seeds in by_label.values())
    assert trial_points(spec) == points  # the draws are the study's own, seeded
    request = trial_request(trial_settings(points[0], spec), "runs/x")
    command = train_command(request)
    assert command.startswith("python train.py --algo ppo --scenario steady --timesteps 256 --n-envs 2 --seed 0")
    assert "n_steps=64" in command and "learning_rate=" in command and "gamma=0.99" in command


def test_the_aggregate_matches_a_direct_computation() -> None:
    """IQM, probability of improvement, paired comparison and gap closed, by hand on a small table."""
    ppo = np.array([[0.05, 0.06, 0.07, 0.02], [0.04, 0.05, 0.09, 0.08]])
    router, admit_all = [0.06, 0.06, 0.07, 0.05], [0.14, 0.15, 0.13, 0.16]
    result = aggregate({"w": {"ppo": ppo}}, {"w": {"admit_all": admit_all, "router": router}}, {"w": 0.03})
    entry = result["worlds"]["w"]
    assert entry["best_heuristic"] == "router"
    row = entry["policies"]["ppo"]
    middle = np.sort(ppo.ravel())[2:6]  # 8 values: the 25% trimmed mean keeps the middle four
    assert row["iqm"] == pytest.approx(middle.mean())
    assert row["iqm_ci"][0] <= row["iqm"] <= row["iqm_ci"][1]
    assert row["mean"] == pytest.approx(ppo.mean())
    # P(a run pays more than the router on an episode), ties half, averaged over the episodes
    wins = [np.mean([1.0 if r < h else 0.5 if r == h else 0.0 for r in ppo[:, e]]) for e, h in enumerate(router)]
    assert row["p_improvement"] == pytest.approx(np.mean(wins))
    assert row["vs_best"] == pytest.approx(ppo.mean(0).mean() / np.mean(router) - 1)
    assert row["gap_closed"] == pytest.approx((np.mean(router) - ppo.mean()) / (np.mean(router) - 0.03))
    assert entry["policies"]["router"]["iqm_ci"] == [np.mean(router)] * 2  # one run: nothing to resample
    assert "| **router** (best heuristic) | 1 x 4 |" in markdown_table(result)
    shares = entry["profile"]["share"]["ppo"]
    assert shares[0] == pytest.approx(1 / 8) and shares[-1] == 1.0  # at most the smallest, at most the largest


@pytest.mark.parametrize("runs", [(1, 1), (3, 1), (1, 4), (5, 3)])
def test_the_fast_probability_of_improvement_is_rliables(runs: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(runs))
    for trial in range(20):  # coarse values so that ties (which count half) occur often
        x = rng.integers(0, 4, size=(runs[0], 6)) / 4
        y = x.copy() if trial == 0 else rng.integers(0, 4, size=(runs[1], 6)) / 4
        assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


@pytest.mark.slow
def test_a_two_trial_study_runs_on_local_ray_and_resumes_without_rerunning(tmp_path: Path, capsys) -> None:
    study = tmp_path / "tiny.yml"
    study.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "studies"
    assert main([str(study), "--out", str(out)]) == 0
    folder = out / "tiny"
    for name in ("study.json", "study.csv", "study.md", "profile_steady.png"):
        assert (folder / name).is_file(), name
    result = json.loads((folder / "study.json").read_text())
    ppo = result["worlds"]["steady"]["policies"]["ppo"]
    assert (ppo["runs"], ppo["episodes"]) == (2, 2) and result["study"]["trials"] == 2
    assert set(result["worlds"]["steady"]["policies"]) > {"ppo", "admit_all", "success_rate_router"}
    models = sorted(folder.glob("runs/ppo/ppo-steady-seed*/model.zip"))
    assert len(models) == 2 and (folder / "runs" / "ppo" / "command.txt").is_file()
    stamps = [m.stat().st_mtime_ns for m in models]
    capsys.readouterr()
    assert main([str(study), "--out", str(out)]) == 2  # not started twice by mistake
    assert "pass --resume" in capsys.readouterr().err
    assert main([str(study), "--out", str(out), "--resume"]) == 0
    assert [m.stat().st_mtime_ns for m in models] == stamps  # finished trials were not run again
    assert json.loads((folder / "study.json").read_text())["worlds"] == result["worlds"]
    other = tmp_path / "other.yml"
    other.write_text(yaml.safe_dump(changed("train.timesteps", 512)))
    other_study = yaml.safe_load(other.read_text())
    other_study["name"] = "tiny"
    other.write_text(yaml.safe_dump(other_study))
    capsys.readouterr()
    assert main([str(other), "--out", str(out), "--resume"]) == 2
    assert "differs from the study" in capsys.readouterr().err


@pytest.mark.slow
def test_an_optuna_search_picks_one_setting_that_every_seed_then_trains(tmp_path: Path) -> None:
    study = changed("search", {"searcher": "optuna", "samples": 2,
                               "sample": {"learning_rate": {"loguniform": [1e-4, 1e-3]}}})  # fmt: skip
    study["train"]["seeds"] = [0, 1]
    (tmp_path / "optuna.yml").write_text(yaml.safe_dump(study))
    assert load_study(tmp_path / "optuna.yml").trials == 2 + 2
    assert main([str(tmp_path / "optuna.yml"), "--out", str(tmp_path / "studies")]) == 0
    folder = tmp_path / "studies" / "tiny"
    result = json.loads((folder / "study.json").read_text())
    (choice,) = result["study"]["optuna_choices"]
    assert choice["algorithm"] == "ppo" and 1e-4 <= choice["learning_rate"] <= 1e-3
    searched = sorted(folder.glob("search_runs/*/ppo-steady-seed0/model.zip"))
    assert len(searched) == 2  # two Optuna trials, on the first seed, never on the worlds' episodes
    (label,) = [name for name in result["worlds"]["steady"]["policies"] if name.startswith("ppo")]
    assert result["worlds"]["steady"]["policies"][label]["runs"] == 2  # the choice, on both seeds
    assert f"{choice['learning_rate']:.3g}" in label
