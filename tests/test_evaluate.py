"""evaluate.py end to end (subprocess), its bad-input handling, and trained-model loading."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evaluate
from agents.deciders import PolicyError, SB3Policy, load_policy
from agents.evaluation import bootstrap_ci, evaluate_policies, interquartile_mean, paired_comparison
from agents.evaluation.html_report import write_report
from agents.model_files import STATISTICS_ENTRY, save_model, statistics_of, write_json
from payroute_env import PaymentRoutingEnv
from payroute_env.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SHORT = """extends = "steady"
name = "steady_short"
description = "two minutes of the steady evening (tests)"
end_s = 120.0
"""


def run_process(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """evaluate.py as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """evaluate.py's ``main`` in this process (no second start-up of Python, numba and matplotlib per case);
    test_cli.py and ``run_process`` cover the real command line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = evaluate.main(list(args))
        except SystemExit as exc:  # argparse's own errors
            status = int(exc.code or 0)
    return subprocess.CompletedProcess(["evaluate.py", *args], status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def short_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "steady_short.toml"
    path.write_text(SHORT, encoding="utf-8")
    return path


def test_cli_writes_table_json_csv_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "res"
    proc = run_process(
        "--scenario", "steady", "--policies", "admit_all,aimd,random", "--episodes", "2", "--seed", "5",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "* admit_all" in proc.stdout or "* aimd" in proc.stdout
    assert "fluid bound" in proc.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["scenario"] == "steady" and data["seeds"] == [5, 6]
    names = [p["name"] for p in data["policies"]]
    assert names == ["admit_all", "aimd", "random"]
    for p in data["policies"]:
        assert [e["seed"] for e in p["episodes"]] == [5, 6]
        s = p["summary"]
        lo, hi = s["failed_payment_rate_ci"]
        assert lo <= s["failed_payment_rate"] <= hi
        assert s["gap_to_bound"] == pytest.approx(s["failed_payment_rate"] - data["bound"]["failed_payment_rate"])
    by_name = {p["name"]: p["summary"]["failed_payment_rate"] for p in data["policies"]}
    assert data["best"] == min(by_name, key=by_name.get)
    assert by_name["random"] > 5 * by_name["admit_all"]  # steady: sane policies fail almost nothing
    assert data["bound"]["failed_payment_rate"] <= min(by_name.values())
    b = data["bound"]
    assert b["lost"] + b["succeeded"] + b["pending"] == pytest.approx(b["arrived"], rel=1e-6)
    assert b["lost"] / b["arrived"] == pytest.approx(b["failed_payment_rate"])
    assert "timelines" not in data  # the per-step series live in their own file
    with np.load(out / "timelines.npz") as timelines:
        assert list(timelines["policies"]) == names and timelines["aimd/arrived"].shape == (360,)
        assert int(timelines["aimd/seed"]) == 5 and list(timelines["aimd/bank_names"])[0] == "ICBC"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sum(r["row"] == "episode" for r in rows) == 6
    means = {r["policy"]: float(r["failed_payment_rate"]) for r in rows if r["row"] == "mean"}
    assert means == pytest.approx(by_name)
    assert any(r["row"] == "bound" for r in rows)
    for png in ["failed_payment_rate.png", "timeline_admit_all.png", "timeline_aimd.png", "timeline_random.png"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_list() -> None:
    proc = run("--list")
    assert proc.returncode == 0, proc.stderr
    for name in ["double11_2013", "steady", "randomized", "admit_all", "sre_throttle", "success_rate_router", "aimd"]:
        assert name in proc.stdout


def test_cli_takes_a_toml_path(tmp_path: Path, short_toml: Path) -> None:
    proc = run("--scenario", str(short_toml), "--policies", "admit_all", "--episodes", "1", "--out", str(tmp_path),
               "--quiet", "--no-plots", "--no-bound")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "results.json").read_text())["scenario"] == "steady_short"


def test_cli_bound_layers_are_chosen(tmp_path: Path, short_toml: Path) -> None:
    bounds = {}
    for layer_s in (5, 30):
        out = tmp_path / str(layer_s)
        proc = run("--scenario", str(short_toml), "--policies", "admit_all", "--episodes", "1", "--out", str(out),
                   "--quiet", "--no-plots", "--bound-layer-s", str(layer_s))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        bounds[layer_s] = json.loads((out / "results.json").read_text())["bound"]
        assert bounds[layer_s]["layer_seconds"] == layer_s
    # finer layers relax less: the bound can only rise
    assert bounds[5]["failed_payment_rate"] >= bounds[30]["failed_payment_rate"] - 1e-9


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, short_toml: Path) -> dict[str, Path]:
    """Untrained SB3 models saved to disk as payroute saves them: fitting ones (PPO with VecNormalize statistics
    beside it, DQN) and a foreign one; ``ppo_vecnormalize.pkl``, the same statistics as SB3 pickles them."""
    import gymnasium as gym
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    d = tmp_path_factory.mktemp("models")
    ppo = PPO("MlpPolicy", PaymentRoutingEnv(short_toml), n_steps=64, batch_size=64, device="cpu", seed=0)
    save_model(ppo, d / "ppo.zip")
    venv = VecNormalize(DummyVecEnv([lambda: PaymentRoutingEnv(short_toml)]))
    venv.reset()
    for _ in range(5):
        venv.step(np.ones((1, 24), dtype=np.float32))
    write_json(d / "ppo_vecnormalize.json", statistics_of(venv))
    venv.save(d / "ppo_vecnormalize.pkl")
    dqn = DQN("MlpPolicy", PaymentRoutingEnv(short_toml, action_mode="discrete"), device="cpu", seed=0)
    save_model(dqn, d / "dqn.zip")
    other = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, batch_size=64, device="cpu")
    save_model(other, d / "pendulum.zip")
    bad = d / "corrupt.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    return {"ppo": d / "ppo.zip", "dqn": d / "dqn.zip", "pendulum": d / "pendulum.zip", "corrupt": bad}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policies", "no_such_policy"], "unknown policy 'no_such_policy'"),
        (["--scenario", "no_such_scenario"], "unknown scenario 'no_such_scenario'"),
        (["--policies", "models/missing.zip"], "model file not found"),
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--seed", "-1"], "--seed must be in [0, 2**64 - 1] (1 episode seeds from it); got -1"),
        (["--seed", str(2**64)], "--seed must be in [0, 2**64 - 1]"),
        (["--episodes", "many"], "invalid int value"),
        (["--bound-layer-s", "0"], "--bound-layer-s must be a finite number of seconds > 0; got 0"),
        (["--bound-layer-s", "nan"], "--bound-layer-s must be a finite number of seconds > 0; got nan"),
        (["--bound-layer-s", "inf"], "--bound-layer-s must be a finite number of seconds > 0; got inf"),
        (["--out", ""], "--out is empty; name the folder for the results"),
        (["--policies", "corrupt"], "not a stable-baselines3 model file"),
        (["--policies", "pendulum"], "model expects observations of shape (3,)"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    args: list[str], message: str, models: dict[str, Path], tmp_path: Path
) -> None:
    args = [str(models.get(a, a)) for a in args]
    proc = run("--scenario", "steady", "--episodes", "1", "--out", str(tmp_path), "--quiet", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "results.json").exists()


def test_cli_takes_the_largest_seed_that_fits(tmp_path: Path) -> None:
    args = ["--scenario", "steady", "--episodes", "1", "--policies", "admit_all", "--no-bound", "--quiet"]
    proc = run(*args, "--seed", str(2**64 - 1), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    episodes = json.loads((tmp_path / "results.json").read_text())["policies"][0]["episodes"]
    assert [e["seed"] for e in episodes] == [2**64 - 1]


def test_cli_checks_the_output_folder_before_evaluating(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run("--scenario", "steady", "--episodes", "1", "--policies", "admit_all", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "cannot write results to" in proc.stderr
    assert "Traceback" not in proc.stderr and "fluid bound" not in proc.stdout  # refused before any work
    # a refused command leaves no empty output folder behind
    proc = run("--scenario", "steady", "--episodes", "1", "--policies", "nope", "--out", str(tmp_path / "new" / "sub"))
    assert proc.returncode == 2 and not (tmp_path / "new").exists()


def test_sb3_models_load_into_the_policy_interface(models: dict[str, Path], short_toml: Path) -> None:
    ppo = load_policy(models["ppo"], short_toml)
    assert isinstance(ppo, SB3Policy) and ppo.algorithm == "ppo" and ppo.action_mode == "continuous"
    assert ppo.obs_rms is not None  # VecNormalize statistics beside the model are applied
    obs = np.ones((3, 172), dtype=np.float32)
    z = ppo.normalize(obs)
    assert not np.allclose(z, obs) and np.abs(z).max() <= ppo.clip_obs
    dqn = load_policy(models["dqn"], short_toml)
    assert dqn.algorithm == "dqn" and dqn.action_mode == "discrete"
    assert load_policy(f"ppo:{models['ppo']}", short_toml).algorithm == "ppo"
    with pytest.raises(PolicyError, match="ppo.zip: the blueprint says 'ppo', the file was opened as a2c"):
        load_policy(f"a2c:{models['ppo']}", short_toml)  # the blueprint knows better than the prefix
    forced = load_policy(f"a2c:{models['ppo']}", short_toml, trust=True)  # SB3's own reading, pickles and all
    assert forced.algorithm == "a2c"
    with pytest.raises(PolicyError, match="unknown algorithm prefix 'foo'"):
        load_policy(f"foo:{models['ppo']}", short_toml)
    with pytest.raises(PolicyError, match="expects observations of shape \\(3,\\)"):
        load_policy(models["pendulum"], short_toml)
    result = evaluate_policies(short_toml, [models["ppo"], models["dqn"], "admit_all"], episodes=2, seed=3,
                               bound=False, progress=False)  # fmt: skip
    assert [len(p.episodes) for p in result.policies] == [2, 2, 2]
    assert result.policies[1].action_mode == "discrete"


def test_model_whose_run_normalised_needs_its_statistics(models: dict[str, Path], tmp_path: Path) -> None:
    # a model copied out of its run folder without vecnormalize.pkl would be fed raw observations it never saw
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = {"algo": "ppo", "algo_kwargs": {}, "normalize": {"norm_obs": True, "norm_reward": True}}
    (run / "config.json").write_text(json.dumps(config))
    cases = [
        (run / "model.zip", "no model_vecnormalize or vecnormalize.json or .pkl beside it"),
        (run / "checkpoints" / "rl_model_64_steps.zip", "no rl_model_vecnormalize_64_steps.json or .pkl beside it"),
    ]
    for target, wanted in cases:
        target.write_bytes(models["ppo"].read_bytes())
        with pytest.raises(PolicyError, match=f"statistics saved with this model are missing .not inside it, {wanted}"):
            SB3Policy(target)
    other = tmp_path / "not_a_run"  # a config.json that train.py did not write says nothing
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"normalize": True}))
    (other / "model.zip").write_bytes(models["ppo"].read_bytes())
    assert SB3Policy(other / "model.zip").obs_rms is None
    (run / "vecnormalize.pkl").write_bytes((models["ppo"].parent / "ppo_vecnormalize.pkl").read_bytes())
    with pytest.raises(PolicyError, match="vecnormalize.pkl: VecNormalize statistics as a pickle.*--trust-model"):
        SB3Policy(run / "model.zip")  # a pickle runs code as it loads
    assert SB3Policy(run / "model.zip", trust=True).obs_rms is not None
    (run / "vecnormalize.json").write_bytes((models["ppo"].parent / "ppo_vecnormalize.json").read_bytes())
    loaded = SB3Policy(run / "model.zip")  # the data file comes before the pickle
    assert loaded.vecnormalize_path == run / "vecnormalize.json"
    np.testing.assert_array_equal(loaded.obs_rms.mean, SB3Policy(run / "model.zip", trust=True).obs_rms.mean)
    (run / "config.json").write_text(json.dumps({**config, "normalize": False}))  # a run without normalisation
    (run / "vecnormalize.pkl").unlink()
    (run / "vecnormalize.json").unlink()
    assert SB3Policy(run / "model.zip").obs_rms is None


def test_a_model_records_its_normalisation_for_when_it_leaves_its_run_folder(
    tiny: str, models: dict[str, Path], tmp_path: Path
) -> None:
    """train.py saves in the model whether it normalised observations, and its statistics inside it: a lone copy
    brings them along, and one stripped of them is refused."""
    import zipfile

    import train

    hp = ["--hyperparams", "n_steps=32", "batch_size=64"]
    argv = ["--scenario", tiny, "--n-envs", "2", "--timesteps", "64", "--out", str(tmp_path), "--no-eval", *hp]
    assert train.main(argv) == 0
    run = tmp_path / "ppo-tiny-seed0"
    lone = tmp_path / "lone"
    lone.mkdir()
    for name in ("model.zip", "best_model.zip"):
        shutil.copy(run / name, lone / name)
        assert SB3Policy(lone / name).vecnormalize_path == lone / name  # inside the copy
    stripped = lone / "stripped" / "model.zip"
    stripped.parent.mkdir()
    with zipfile.ZipFile(run / "model.zip") as source, zipfile.ZipFile(stripped, "w") as out:
        for item in source.infolist():
            if item.filename != STATISTICS_ENTRY:
                out.writestr(item, source.read(item))
    with pytest.raises(PolicyError, match="the model records it.*no model_vecnormalize or vecnormalize.json or .pkl"):
        SB3Policy(stripped)
    # a model train.py did not save (RL Zoo's layout: one vecnormalize.pkl for best_model.zip and the final model)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(models["ppo"], zoo / "best_model.zip")
    shutil.copy(models["ppo"].parent / "ppo_vecnormalize.pkl", zoo / "vecnormalize.pkl")
    assert SB3Policy(zoo / "best_model.zip", trust=True).vecnormalize_path == zoo / "vecnormalize.pkl"


TWO_BANKS = """extends = "steady"
name = "two_banks"
description = "two banks only"
end_s = 60.0
[[banks]]
name = "A"
share = 0.5
quick_share = 0.9
quick_success = 0.95
netbank_success = 0.65
quick_capacity = 1000.0
quick_declared = 1000.0
netbank_capacity = 200.0
netbank_declared = 200.0
[[banks]]
name = "B"
share = 0.5
quick_share = 0.9
quick_success = 0.95
netbank_success = 0.65
quick_capacity = 1000.0
quick_declared = 1000.0
netbank_capacity = 200.0
netbank_declared = 200.0
"""


def test_model_for_another_scenario_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "two_banks.toml"
    path.write_text(TWO_BANKS, encoding="utf-8")
    with pytest.raises(PolicyError, match=r"expects observations of shape \(172,\), but scenario 'two_banks'"):
        load_policy(models["ppo"], path)
    proc = run("--scenario", str(path), "--policies", f"admit_all,{models['dqn']}", "--out", str(tmp_path))
    assert proc.returncode == 2 and "two_banks" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # heuristics adapt to any number of banks
    result = evaluate_policies(path, ["success_rate_router", "static_capacity"], episodes=1, progress=False)
    assert result.bound is not None and len(result.policies[0].episodes) == 1


def test_a_model_of_the_retired_action_encoding_is_refused_saying_so(short_toml: Path, tmp_path: Path) -> None:
    """A model trained on Box(0, 1) actions would misread every action now: refused with a message, not run."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    class RetiredBox(gym.Wrapper):
        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            self.action_space = gym.spaces.Box(0.0, 1.0, env.action_space.shape, dtype=np.float32)

    old = PPO("MlpPolicy", RetiredBox(PaymentRoutingEnv(short_toml)), n_steps=32, batch_size=32, device="cpu")
    save_model(old, tmp_path / "old.zip")
    with pytest.raises(PolicyError, match=r"previous continuous actions, Box\(0, 1\).*retrain it"):
        load_policy(tmp_path / "old.zip", short_toml)
    proc = run("--scenario", str(short_toml), "--policies", str(tmp_path / "old.zip"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "previous continuous actions" in proc.stderr


def test_recurrent_ppo_state_is_carried(short_toml: Path, tmp_path: Path) -> None:
    from sb3_contrib import RecurrentPPO

    model = RecurrentPPO("MlpLstmPolicy", PaymentRoutingEnv(short_toml), n_steps=32, batch_size=32, device="cpu")
    save_model(model, tmp_path / "rppo.zip")
    pol = load_policy(tmp_path / "rppo.zip", short_toml)
    assert pol.algorithm == "recurrent_ppo"
    actions, state = pol.predict(np.zeros((2, 172), dtype=np.float32), episode_start=np.ones(2, dtype=bool))
    assert actions.shape == (2, 24) and state is not None
    result = evaluate_policies(short_toml, [pol], episodes=2, seed=1, bound=False, progress=False)
    assert len(result.policies[0].episodes) == 2


def test_statistics_helpers() -> None:
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci([2.0]) == (2.0, 2.0)
    assert interquartile_mean([0.0, 1.0, 2.0, 100.0]) == pytest.approx(1.5)


def test_paired_comparison_by_hand() -> None:
    # every episode of x fails twice as often as the reference's: whichever episodes a resample draws, the
    # ratio of means is 2, so the relative interval has no width; the difference varies with the draw
    c = paired_comparison([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert c["difference"] == pytest.approx(2.0) and c["relative"] == pytest.approx(1.0)
    assert c["relative_ci"] == pytest.approx([1.0, 1.0])
    lo, hi = c["difference_ci"]
    assert 1.0 <= lo < 2.0 < hi <= 3.0
    assert c["better_episodes"] == 0 and c["worse_episodes"] == 3
    one = paired_comparison([3.0], [2.0])  # one episode: intervals of no width
    assert one["difference_ci"] == [one["difference"]] * 2 == [1.0, 1.0]
    assert one["relative_ci"] == [one["relative"]] * 2 == [0.5, 0.5]
    assert (one["better_episodes"], one["worse_episodes"]) == (0, 1)
    # the difference's interval is the bootstrap of the per-episode differences: same level, pairing and draws
    x, r = np.random.default_rng(1).uniform(0.02, 0.1, (2, 15))
    assert paired_comparison(x, r)["difference_ci"] == pytest.approx(list(bootstrap_ci(x - r)))
    # better in most episodes, worse on average: the counts show what the mean hides
    mixed = paired_comparison([0.9, 0.9, 0.9, 2.0], [1.0, 1.0, 1.0, 1.0])
    assert mixed["relative"] > 0 and (mixed["better_episodes"], mixed["worse_episodes"]) == (3, 1)
    tie = paired_comparison([1.0, 2.0], [1.0, 3.0])
    assert (tie["better_episodes"], tie["worse_episodes"]) == (1, 0)  # a tie counts as neither


def test_pairing_removes_what_episodes_share() -> None:
    """Episodes that differ a lot (a randomised world) give wide separate CIs; a policy that is better by the
    same amount in every episode is still clearly better, paired."""
    worlds = np.random.default_rng(0).uniform(0.02, 0.12, 20)  # per-episode failed rate of the reference
    better = worlds - 0.003
    lo_ref, hi_ref = bootstrap_ci(worlds)
    lo_x, hi_x = bootstrap_ci(better)
    assert lo_ref < hi_x  # the separate CIs overlap: side by side, no verdict
    c = paired_comparison(better, worlds)
    assert c["difference_ci"] == pytest.approx([-0.003, -0.003])
    assert c["relative_ci"][1] < 0.0  # paired: better on every resample


def test_a_reference_that_failed_nothing_in_some_resample_has_no_relative_interval() -> None:
    from agents.evaluation import PolicyResult
    from agents.evaluation.report import _versus

    c = paired_comparison([0.1, 0.2], [0.0, 0.1])  # a resample of the first episode alone divides by zero
    assert c["relative"] == pytest.approx(2.0) and all(np.isnan(c["relative_ci"]))
    assert c["difference_ci"][0] == pytest.approx(0.1)  # the difference is still fine
    r = PolicyResult("p", "", "continuous", [], summary={"vs_reference": c})
    assert _versus(r, "ref", 2) == ["+200.0", "0/2"]  # the point shown, no "[nan, nan]"


@pytest.mark.parametrize(("x", "ref"), [([1.0, 2.0], [1.0]), ([], [])])
def test_paired_comparison_refuses_unpaired_input(x: list[float], ref: list[float]) -> None:
    with pytest.raises(ValueError, match="equally long, non-empty"):
        paired_comparison(x, ref)


def test_every_policy_is_compared_with_the_best_heuristic_by_default(short_toml: Path) -> None:
    result = evaluate_policies(short_toml, ["random", "admit_all"], episodes=3, seed=2, bound=False, progress=False)
    assert result.reference == "admit_all"  # the better of the two heuristics
    rand, admit = result.policies
    assert admit.summary["vs_reference"]["difference"] == 0.0 and admit.summary["vs_reference"]["relative"] == 0.0
    vs = rand.summary["vs_reference"]
    rates = [[e["failed_payment_rate"] for e in p.episodes] for p in (rand, admit)]
    assert vs["reference"] == "admit_all" and vs["difference"] == pytest.approx(np.mean(rates[0]) - np.mean(rates[1]))
    assert vs["relative"] == pytest.approx(np.mean(rates[0]) / np.mean(rates[1]) - 1)
    assert vs["relative_ci"][0] <= vs["relative"] <= vs["relative_ci"][1]
    chosen = evaluate_policies(short_toml, ["random", "admit_all"], episodes=3, seed=2, bound=False, progress=False,
                               reference="random")  # fmt: skip
    assert chosen.reference == "random"
    assert chosen.policies[1].summary["vs_reference"]["relative"] < 0  # admit_all fails less than random
    with pytest.raises(ValueError, match="reference 'aimd' is not among the policies evaluated"):
        evaluate_policies(short_toml, ["admit_all"], episodes=1, bound=False, progress=False, reference="aimd")


def test_without_a_heuristic_nothing_is_compared_and_a_model_is_a_reference_as_written(
    short_toml: Path, tmp_path: Path
) -> None:
    from stable_baselines3 import PPO

    run = tmp_path / "run"
    run.mkdir()
    untrained = PPO("MlpPolicy", PaymentRoutingEnv(short_toml), n_steps=64, batch_size=64, device="cpu")
    save_model(untrained, run / "model.zip")
    result = evaluate_policies(short_toml, [run / "model.zip"], episodes=1, bound=False, progress=False)
    assert result.reference is None and "vs_reference" not in result.policies[0].summary
    # a run folder stands for its model.zip, as a reference too, whether named as written or as shown
    for written in (str(run), str(run / "model.zip")):
        result = evaluate_policies(short_toml, [str(run), "admit_all"], episodes=1, bound=False, progress=False,
                                   reference=written)  # fmt: skip
        assert result.reference == result.policies[0].name == str(run / "model.zip")
        assert result.policies[1].summary["vs_reference"]["reference"] == str(run / "model.zip")


def test_cli_reference_is_named_in_table_json_and_csv(tmp_path: Path, short_toml: Path) -> None:
    proc = run("--scenario", str(short_toml), "--policies", "admit_all,random", "--reference", "random",
               "--episodes", "2", "--out", str(tmp_path), "--quiet", "--no-plots", "--no-bound")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["reference"] == "random"
    vs = data["policies"][0]["summary"]["vs_reference"]
    assert f"{100 * vs['relative']:+.1f}" in proc.stdout and "from random's" in proc.stdout.replace("\n", " ")
    means = {r["policy"]: r for r in csv.DictReader((tmp_path / "results.csv").open()) if r["row"] == "mean"}
    assert float(means["admit_all"]["relative_to_reference"]) == pytest.approx(vs["relative"])
    assert means["admit_all"]["reference"] == "random"
    assert int(means["admit_all"]["better_episodes"]) == vs["better_episodes"] == 2  # random fails far more
    assert int(means["admit_all"]["worse_episodes"]) == vs["worse_episodes"] == 0
    for csv_key, json_key, i in [
        ("relative_ci_low", "relative_ci", 0),
        ("relative_ci_high", "relative_ci", 1),
        ("difference_ci_low", "difference_ci", 0),
        ("difference_ci_high", "difference_ci", 1),
    ]:
        assert float(means["admit_all"][csv_key]) == pytest.approx(vs[json_key][i])
    assert float(means["admit_all"]["difference_to_reference"]) == pytest.approx(vs["difference"])
    bad = run("--scenario", str(short_toml), "--policies", "admit_all", "--reference", "aimd", "--episodes", "1",
              "--out", str(tmp_path / "bad"), "--quiet", "--no-plots", "--no-bound")  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "reference 'aimd' is not among the policies evaluated" in bad.stderr


def test_common_random_numbers_and_reproducibility(short_toml: Path) -> None:
    a = evaluate_policies(short_toml, ["admit_all", "aimd"], episodes=2, seed=9, bound=False, progress=False)
    b = evaluate_policies(short_toml, ["admit_all"], episodes=2, seed=9, bound=False, progress=False)
    assert [e["arrived"] for e in a.policies[0].episodes] == [e["arrived"] for e in b.policies[0].episodes]
    assert a.policies[0].episodes == b.policies[0].episodes
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policies(short_toml, ["admit_all"], episodes=0)


def test_randomised_scenario_gets_one_bound_per_episode(tmp_path: Path) -> None:
    path = tmp_path / "randomized_short.toml"
    path.write_text('extends = "randomized"\nname = "randomized_short"\nend_s = 600.0\n', encoding="utf-8")
    result = evaluate_policies(path, ["admit_all"], episodes=2, seed=3, progress=False)
    b = result.bound
    assert b is not None and b["per_episode_parameters"] is True
    assert len(b["per_episode"]) == 2 and b["per_episode"][0] != b["per_episode"][1]
    assert b["failed_payment_rate"] == pytest.approx(np.mean(b["per_episode"]))
    assert b["lost"] + b["succeeded"] + b["pending"] == pytest.approx(b["arrived"], rel=1e-6)
    gaps = [e["failed_payment_rate"] - r for e, r in zip(result.policies[0].episodes, b["per_episode"], strict=True)]
    assert result.policies[0].summary["gap_to_bound"] == pytest.approx(np.mean(gaps))


def test_the_table_keeps_every_figure_whole_and_names_a_model_by_its_run(short_toml: Path) -> None:
    """Into a file the table is whole, however wide; a model is shown by its run's folder, not its long path."""
    from rich.console import Console

    from agents.evaluation.report import print_results_table

    result = evaluate_policies(short_toml, ["random", "admit_all"], episodes=2, progress=False, timeline=False)
    result.policies[0].name = "/a/very/long/absolute/path/to/an/output/folder/of/runs/" * 3 + "ppo-x-seed0/model.zip"
    console = Console(width=80, record=True, force_terminal=False, file=io.StringIO())
    print_results_table(result, console)
    text = console.file.getvalue()
    assert "ppo-x-seed0" in text and "/a/very" not in text
    s = result.policies[0].summary
    lo, hi = s["failed_payment_rate_ci"]
    for figure in (f"{100 * s['failed_payment_rate']:.2f}", f"[{100 * lo:.2f}, {100 * hi:.2f}]",
                   f"{s['successful_payments_per_s']:.0f}", f"{s['outage_minutes']:.1f}",
                   f"{100 * s['gap_to_bound']:.2f}"):  # fmt: skip
        assert figure in text, (figure, text)
    vs = s["vs_reference"]  # the random policy against admit_all: a four-digit relative change, whole
    lo, hi = vs["relative_ci"]
    assert f"{100 * vs['relative']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" in text, text
    assert f"{vs['better_episodes']}/2" in text
    assert "…" not in text


@pytest.mark.parametrize("width", [60, 80, 100])
def test_in_a_narrow_terminal_the_table_fits_and_keeps_the_main_figures(short_toml: Path, width: int) -> None:
    """A terminal gets a table as wide as it is: the lowest-priority columns go first, the caption says so, and
    the best policy's marker stays on its row."""
    from rich.console import Console

    from agents.evaluation.report import print_results_table

    result = evaluate_policies(short_toml, ["random", "admit_all"], episodes=2, progress=False, timeline=False)
    console = Console(width=width, record=True, force_terminal=True, file=io.StringIO())
    print_results_table(result, console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    best = next(line for line in lines if "* admit_all" in line)  # marker and name on one row, with its rate
    assert f"{100 * result.policies[1].summary['failed_payment_rate']:.2f}" in best
    text = "\n".join(lines)
    assert ("outage" not in text) and "left out to fit the terminal" in " ".join(text.split())
    assert "failed" in text and "95% CI" in text


def test_report_is_one_self_contained_page_with_the_table_figures_scenario_and_command(
    tmp_path: Path, short_toml: Path
) -> None:
    out = tmp_path / "res"
    args = ["--scenario", str(short_toml), "--policies", "admit_all,aimd", "--episodes", "2", "--out", str(out)]
    proc = run(*args, "--report", "--quiet", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not list(out.glob("*.png"))  # --no-plots: the figures are drawn for the report alone, embedded
    figures = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(figures) == 3  # the failed-payment rates, and each policy's timeline
    assert all(base64.b64decode(f).startswith(b"\x89PNG") for f in figures)
    # self-contained: nothing it links to or loads from anywhere else
    assert not re.search(r'(src|href)="(?!data:)', html)
    results = json.loads((out / "results.json").read_text())
    for policy in results["policies"]:  # every policy's failed % as the table prints it
        assert f'<td class="num">{100 * policy["summary"]["failed_payment_rate"]:.2f}</td>' in html
    assert f'<td class="num">{100 * results["bound"]["failed_payment_rate"]:.2f}</td>' in html
    assert results["meta"]["machine"] in html and html.count("<tr") == 4  # header, two policies, the bound
    assert "python evaluate.py --scenario" in html and "--report" in html
    assert "steady_short" in html and "&#34;base_rate&#34;" in html  # the scenario's parameters, escaped


def test_report_escapes_what_it_is_given(tmp_path: Path) -> None:
    result = evaluate_policies("steady", ["admit_all"], episodes=1, seed=0, bound=False, progress=False)
    path = write_report(result, load_scenario("steady"), [], tmp_path / "r.html", command="x <script>alert(1)</script>")
    html = path.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_no_report_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "res"
    proc = run("--scenario", "steady", "--policies", "admit_all", "--episodes", "1", "--out", str(out), "--quiet",
               "--no-bound", "--no-plots")  # fmt: skip
    assert proc.returncode == 0 and not (out / "report.html").exists()
