"""train.py: every algorithm trains, saves and reloads; resume; Ctrl-C; bad input; a real learning check."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import train
from agents.algorithms import ALGOS, algo_class, load_model
from agents.analysis.plain_sb3 import failed_rate
from agents.deciders import PolicyError, load_policy
from agents.model_files import load_replay_buffer, load_trained_model
from agents.training import TrainRequest, UsageError, resolve_config
from agents.training.callbacks import CtrlCStops, ctrl_c_ignored
from agents.training.checkpoints import last_checkpoint
from agents.training.hyperparams import RECORD_RESIDUAL_CALLBACK, RESIDUAL_WRAPPER, STATUS_QUO_CALLBACK
from payroute_env.actions import status_quo
from payroute_env.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]

FAST = ["--no-eval", "--no-progress"]


def _small_hp(algo: str) -> list[str]:
    """Hyper-parameters that make a few hundred steps meaningful for each algorithm."""
    if algo in ("ppo", "recurrent_ppo"):
        return ["n_steps=32", "batch_size=64", "n_epochs=1"]
    if algo == "a2c":
        return ["n_steps=8"]
    return ["learning_starts=50", "buffer_size=2000", "batch_size=32"]


@pytest.mark.parametrize("algo", list(ALGOS))
def test_every_algorithm_trains_saves_and_reloads(algo: str, tiny: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    argv = ["--algo", algo, "--scenario", tiny, "--timesteps", "256", "--n-envs", "2", "--out", str(out)]
    assert train.main(argv + ["--eval-freq", "128", "--hyperparams", *_small_hp(algo)] + FAST) == 0
    run = out / f"{algo}-tiny-seed0"
    # without a progress bar, one line per periodic evaluation, each counting to the steps the run took
    lines = [line for line in capsys.readouterr().out.splitlines() if "evaluation:" in line]
    with np.load(run / "learning_curve.npz") as curve:
        assert len(lines) == len(curve["timesteps"]) >= 2
        for line, steps, rate in zip(lines, curve["timesteps"], curve["failed_payment_rate"], strict=True):
            assert line.startswith(f"{algo} on tiny: {steps:,}/") and f"{100 * rate:.2f}% failed" in line
    assert lines[-1].split("/")[1].split(" ")[0] == f"{load_model(algo, run / 'model.zip').num_timesteps:,}"
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == algo and config["n_envs"] == 2
    for name in ("model.zip", "best_model.zip", "learning_curve.npz", "evaluations.npz", "config.json"):
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.pkl")) and not list(run.rglob(".*partial*"))  # no pickle, nothing half-written
    model, stats = load_trained_model(run / "model.zip", algo)  # rebuilt from its blueprint: nothing unpickled
    assert stats is not None and stats["obs_count"] > 256  # the statistics travel inside the model's zip
    assert model.num_timesteps >= 256
    sim = Simulator(tiny, num_envs=2, action_mode=config["action_mode"])
    obs = sim.reset(seeds=[5, 6])
    actions, _ = model.predict(obs, deterministic=True)
    assert sim.single_action_space.contains(np.asarray(actions[0]).astype(sim.single_action_space.dtype))


def newest_steps(run: Path) -> int:
    """The steps of a run's newest checkpoint, from the file names."""
    names = (run / "checkpoints").glob("rl_model_*_steps.zip")
    return max(int(p.name.removeprefix("rl_model_").removesuffix("_steps.zip")) for p in names)


def test_resume_continues_the_timestep_count(tiny: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    base = ["--scenario", tiny, "--n-envs", "2", "--out", str(out), "--eval-freq", "64"]
    base += ["--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1"]
    assert train.main(base + ["--timesteps", "128"] + FAST) == 0
    run = out / "ppo-tiny-seed0"
    assert newest_steps(run) == 128
    # a second start without --resume refuses to overwrite the run
    assert train.main(base + ["--timesteps", "128"] + FAST) == 2
    assert train.main(base + ["--timesteps", "256", "--resume"] + FAST) == 0
    assert newest_steps(run) == 256
    assert algo_class("ppo").load(run / "model.zip").num_timesteps == 256


def test_resume_of_an_off_policy_run_continues_with_its_replay_buffer(tiny: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    base = ["--algo", "td3", "--scenario", tiny, "--n-envs", "2", "--out", str(out), "--eval-freq", "128"]
    base += ["--hyperparams", *_small_hp("td3")]
    assert train.main(base + ["--timesteps", "256"] + FAST) == 0
    run = out / "td3-tiny-seed0"
    # every checkpoint saved its buffer, but only the newest is kept (a real buffer takes hundreds of MB)
    assert [p.name for p in (run / "checkpoints").glob("*replay_buffer*")] == ["rl_model_replay_buffer_256_steps.npz"]
    with np.load(run / "checkpoints" / "rl_model_replay_buffer_256_steps.npz", allow_pickle=False) as before:
        last = 256 // 2 - 1  # the newest row (2 envs): mid-episode, neither done nor timed out
        assert not before["dones"][last].any() and not before["timeouts"][last].any()
    capsys.readouterr()
    assert train.main(base + ["--timesteps", "384", "--resume"] + FAST) == 0
    assert "with its replay buffer of 256 transitions" in capsys.readouterr().out
    buffers = list((run / "checkpoints").glob("*replay_buffer*"))
    assert [p.name for p in buffers] == ["rl_model_replay_buffer_384_steps.npz"]
    model, _ = load_trained_model(run / "model.zip", "td3")
    load_replay_buffer(model, buffers[0])
    assert model.replay_buffer.size() * model.n_envs == 384  # the first 256 transitions were carried over
    # the checkpoint cut those episodes: marked as time-outs, so n-step returns stop there instead of running
    # on into the fresh episodes the resumed run appended
    assert model.replay_buffer.timeouts[last].all() and not model.replay_buffer.timeouts[last + 1].any()
    # a checkpoint without its buffer still resumes, saying the buffer starts empty
    buffers[0].unlink()
    assert train.main(base + ["--timesteps", "512", "--resume"] + FAST) == 0
    assert "so the buffer starts empty" in capsys.readouterr().out


def test_n_step_returns_survive_saving_loading_and_resuming(tiny: str, tmp_path: Path) -> None:
    import warnings

    out = tmp_path / "runs"
    base = ["--algo", "td3", "--scenario", tiny, "--n-envs", "2", "--out", str(out), "--eval-freq", "128"]
    base += ["--hyperparams", *_small_hp("td3"), "n_steps=3"]
    assert train.main(base + ["--timesteps", "128"] + FAST) == 0
    with warnings.catch_warnings(record=True) as caught:  # SB3 wrongly warns that n_steps "is ignored"
        warnings.simplefilter("always")
        assert train.main(base + ["--timesteps", "256", "--resume"] + FAST) == 0
        policy = load_policy(str(out / "td3-tiny-seed0" / "model.zip"), tiny)
    assert not [w for w in caught if "is ignored because" in str(w.message)]
    assert policy.model.n_steps == 3 and policy.model.replay_buffer_kwargs == {"n_steps": 3, "gamma": 0.995}
    assert type(policy.model.replay_buffer).__name__ == "NStepReplayBuffer"


def test_resume_writes_where_the_run_now_is(tiny: str, tmp_path: Path) -> None:
    # a run folder copied elsewhere resumes there, not in the folder its config.json was first written in
    base = ["--scenario", tiny, "--n-envs", "2", "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1"]
    assert train.main(base + ["--out", str(tmp_path / "a"), "--timesteps", "64"] + FAST) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert train.main(base + ["--out", str(tmp_path / "b"), "--timesteps", "128", "--resume"] + FAST) == 0
    assert newest_steps(tmp_path / "b" / "ppo-tiny-seed0") == 128
    assert newest_steps(tmp_path / "a" / "ppo-tiny-seed0") == 64
    saved = json.loads((tmp_path / "b" / "ppo-tiny-seed0" / "config.json").read_text())
    assert Path(saved["run_dir"]) == tmp_path / "b" / "ppo-tiny-seed0" and saved["timesteps"] == 128
    # TensorBoard logs of the resumed part go to the new folder too
    assert len(list((tmp_path / "a" / "ppo-tiny-seed0" / "tb").rglob("events.*"))) == 1
    assert len(list((tmp_path / "b" / "ppo-tiny-seed0" / "tb").rglob("events.*"))) == 2


def test_resume_keeps_the_runs_target_settings_and_evaluations(tiny: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    base = ["--scenario", tiny, "--n-envs", "2", "--out", str(out), "--eval-freq", "64"]
    hp = ["--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1"]
    assert train.main(base + hp + ["--timesteps", "128"] + FAST) == 0
    run = out / "ppo-tiny-seed0"
    first_curve = np.load(run / "learning_curve.npz")["timesteps"].tolist()
    assert first_curve == [64, 128]
    # a run stopped before its target: without --timesteps, --resume goes on to the run's own target
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "timesteps": 256}))
    # an earlier evaluation no later model can beat: best_model.zip must survive the resumed evaluations
    evals = dict(np.load(run / "evaluations.npz"))
    evals["results"] = np.full_like(evals["results"], 1e9)
    np.savez(run / "evaluations.npz", **evals)
    best = (run / "best_model.zip").read_bytes()
    assert train.main(["--scenario", tiny, "--out", str(out), "--resume"] + FAST) == 0
    assert algo_class("ppo").load(run / "model.zip").num_timesteps == 256
    assert (run / "best_model.zip").read_bytes() == best
    assert np.load(run / "learning_curve.npz")["timesteps"].tolist() == [64, 128, 192, 256]
    assert np.load(run / "evaluations.npz")["timesteps"].tolist() == [64, 128, 192, 256]
    # a command that would change a training setting is refused, naming it; repeating the run's own is fine
    capsys.readouterr()
    changed = base + ["--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=3", "--timesteps", "320", "--resume"]
    assert train.main(changed + FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_epochs" in err[0] and "--init-model" in err[0], err
    # only what the command gives is compared: n_envs (2 here, 16 in the YAML) is not given, so it is the run's
    own = ["--scenario", tiny, "--out", str(out), "--hyperparams", "n_epochs=1", "--timesteps", "320", "--resume"]
    assert train.main(own + FAST) == 0
    assert json.loads((run / "config.json").read_text())["n_envs"] == 2


def test_resume_checks_seeds_with_the_runs_own_n_envs(tiny: str, tmp_path: Path) -> None:
    # 2 environments from seed 990 stay clear of the final table's seeds 1000-1019; the YAML's 16 would not
    base = ["--scenario", tiny, "--seed", "990", "--out", str(tmp_path), "--hyperparams", "n_steps=32", "batch_size=64"]
    assert train.main(base + ["--n-envs", "2", "--timesteps", "64"] + FAST) == 0
    assert train.main(base + ["--timesteps", "128", "--resume"] + FAST) == 0
    assert newest_steps(tmp_path / "ppo-tiny-seed990") == 128


def test_resume_of_a_finished_run_trains_nothing_and_keeps_its_target(tiny: str, tmp_path: Path, capsys) -> None:
    """A run stops at the first whole rollout past its target (100 -> 128 here); resuming it, with or without a
    smaller --timesteps, trains nothing and leaves the target in config.json as it was."""
    base = ["--scenario", tiny, "--n-envs", "2", "--out", str(tmp_path), "--hyperparams", "n_steps=32", "batch_size=64"]
    assert train.main(base + ["--timesteps", "100"] + FAST) == 0
    run = tmp_path / "ppo-tiny-seed0"
    assert newest_steps(run) == 128
    for extra, target in (([], 100), (["--timesteps", "64"], 64)):
        capsys.readouterr()
        assert train.main(base + ["--resume", *extra] + FAST) == 0
        assert f"already has 128 steps (target {target}): nothing to train" in capsys.readouterr().out
        assert json.loads((run / "config.json").read_text())["timesteps"] == 100
        assert newest_steps(run) == 128


def test_resume_with_a_corrupt_checkpoint_exits_2(tiny: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    base = ["--scenario", tiny, "--n-envs", "2", "--out", str(out), "--hyperparams", "n_steps=32", "batch_size=64"]
    assert train.main(base + ["--timesteps", "64"] + FAST) == 0
    checkpoints = sorted((out / "ppo-tiny-seed0" / "checkpoints").glob("*.zip"))
    for path in checkpoints:
        path.write_bytes(b"not a zip file")
    capsys.readouterr()
    assert train.main(base + ["--timesteps", "128", "--resume"] + FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint in" in err[0] and "loads" in err[0], err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algo", "nope"], "unknown algorithm"),
        (["--algo", "dqn", "--action-mode", "continuous"], "cannot use action mode"),
        (["--algo", "sac", "--action-mode", "discrete"], "cannot use action mode"),
        (["--timesteps", "-5"], "--timesteps must be a positive"),
        (["--n-envs", "0"], "--n-envs must be an integer >= 1"),
        (["--threads", str(10**19)], "--threads must be at most 1024"),  # torch overflowed (found by fuzzing)
        (["--hyperparams", "n_envs=0"], "n_envs must be an integer >= 1, got 0"),
        (["--hyperparams", "n_timesteps=-5"], "n_timesteps must be a positive whole number, got -5"),
        (["--scenario", "no_such_scenario"], "unknown scenario"),
        (["--hyperparams", "novalue"], "key=value"),
        (["--hyperparams", "gamma=0.9", "--hyperparams", "gamma=0.8"], "sets gamma twice ('0.9', then '0.8')"),
        (["--seed", "995", "--n-envs", "8"], "overlap the evaluation seeds"),
        (["--seed", "1999999"], "--seed must be at most 1999984 with 16 environments"),
        (["--eval-seed", "18446744073709551615"], "--eval-seed must be at most 2**64 - 20"),
        (["--eval-seed", "1999990"], "overlap the periodic evaluations' 2000000..2000007"),
        (["--hyperparams", "policy={a: 1}"], "policy = {'a': 1}: ppo takes"),
        (["--hyperparams", "policy=[MlpPolicy]"], "policy = ['MlpPolicy']: ppo takes"),
        (["--hyperparams", "noise_type=normal", "noise_std=0.1"], "noise_type applies to sac and td3"),
        (["--algo", "td3", "--hyperparams", "noise_type=pink"], "noise_type = 'pink'"),
        (["--algo", "td3", "--hyperparams", "noise_std=-1"], "noise_std = -1"),
        (["--algo", "td3", "--hyperparams", "noise_type=null", "noise_std=0.2"], "noise_std needs noise_type"),
        (["--hyperparams", "foo=1"], "ppo has no setting foo"),
        (["--hyperparams", "n_steps=abc"], "n_steps = 'abc': expected a whole number >= 1"),
        (["--hyperparams", "n_steps=0"], "n_steps = 0: expected a whole number >= 1"),
        (["--hyperparams", "gamma=1.5"], "gamma = 1.5: expected a finite number in [0, 1]"),
        (["--hyperparams", "learning_rate=.inf"], "learning_rate = inf: expected a finite number in [0, inf)"),
        (["--hyperparams", "clip_range=null"], "clip_range = None: expected a finite number"),
        (["--hyperparams", "ent_coef=auto"], "ent_coef = 'auto': expected a finite number"),  # SAC only
        (["--hyperparams", "seed=3"], "seed is set by train.py itself, not by --hyperparams; use --seed"),
        (["--algo", "td3", "--hyperparams", "action_noise=normal"], "use noise_type and noise_std"),
        (["--hyperparams", "policy=MlpLstmPolicy"], "policy = 'MlpLstmPolicy': ppo takes"),
        (["--algo", "td3", "--hyperparams", "train_freq=[1, week]"], "train_freq = [1, 'week']"),
        (["--hyperparams", "policy_kwargs.foo=1", "--timesteps", "64", "--no-eval"], "ppo rejects these settings"),
        (["--hyperparams", "normalize.gamma=0.9"], "normalize.gamma is the algorithm's gamma; set gamma instead"),
        (["--hyperparams", "normalize.clip=3"], "normalize has no option 'clip'; it takes norm_obs, norm_reward"),
        (["--hyperparams", "eval_episodes=abc"], "eval_episodes = 'abc': expected a whole number >= 1"),
        (["--hyperparams", "eval_freq=-5"], "eval_freq = -5: expected a whole number >= 1"),
        (["--hyperparams", "eval_freq=.nan"], "eval_freq = nan: expected a whole number >= 1"),
        (["--hyperparams", "n_steps=.inf"], "n_steps = inf: expected a whole number >= 1"),
        (["--hyperparams", "n_steps=1" + "0" * 400], "expected a whole number >= 1"),  # an int beyond any float
        (["--hyperparams", "gamma=1" + "0" * 400], "expected a finite number in [0, 1]"),
        (["--hyperparams", "normalize={clip_obs: 1" + "0" * 400 + "}"], "expected a finite number > 0"),
        (["--hyperparams", "start_at_status_quo=true"], "it is now callback: agents.training.callbacks.StartAt"),
        (["--hyperparams", "callback=my.Callback"], "callback 'my.Callback': train.py runs payroute's own callbacks"),
        (["--hyperparams", "callback=[{agents.training.callbacks.StartAtStatusQuo: {x: 1}}]"], "takes no options"),
        (["--hyperparams", "callback=7"], "callback = 7: expected a class name"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=__import__('os'))"], "is not something train.py reads"),
        (["--hyperparams", "policy_kwargs=dict(net_arch=[64"], "neither a YAML mapping nor an expression"),
        (["--timesteps", "inf"], "--timesteps must be a positive whole number"),
        (["--hyperparams", "policy_kwargs.activation_fn=sigmoid"], "activation_fn = 'sigmoid'"),
        (["--hyperparams", "policy_kwargs.features_extractor_class=nope"], "features_extractor_class = 'nope'"),
        (["--hyperparams", "env_kwargs.bogus=1"], "env_kwargs has no setting bogus"),
        (["--hyperparams", "env_kwargs.info_counters=maybe"], "info_counters must be True or False; got 'maybe'"),
        (["--hyperparams", "env_kwargs.beta=-1", "--timesteps", "64", "--no-eval"], "beta must be a finite number"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--eval-seed", "-100"], "--eval-seed must be >= 0"),
        (["--eval-freq", "0"], "--eval-freq must be >= 1"),
        (["--hyperparams", "policy_kwargs.net_arch=[-1]"], "policy_kwargs.net_arch = [-1]: expected a list of layer"),
        (["--hyperparams", "policy_kwargs.net_arch={pi: [64], vf: [0]}"], "policy_kwargs.net_arch = {'pi': [64]"),
        (["--hyperparams", "policy_kwargs.net_arch={pi: [64], vf: [64], x: [1]}"], "'x': [1]}: expected a list"),
        (["--algo", "sac", "--hyperparams", "policy_kwargs.net_arch={pi: [64], qf: 64}"], "{pi: [...], qf: [...]} for"),
        (["--hyperparams", "policy_kwargs.log_std_init=.nan"], "policy_kwargs.log_std_init = nan: expected a finite"),
        (["--hyperparams", "policy_kwargs.log_std_init=1e308"], "log_std_init = 1e+308: expected a number in [-20, 2]"),
        (
            [
                "--hyperparams",
                "policy_kwargs.features_extractor_class=per_bank",
                "policy_kwargs.features_extractor_kwargs={hidden: -3}",
                "--timesteps",
                "64",
            ],
            "features_extractor_kwargs.hidden = -3: expected a whole number >= 1",
        ),
        (
            [
                "--hyperparams",
                "policy_kwargs.features_extractor_class=per_bank",
                "policy_kwargs.features_extractor_kwargs={bank_id: maybe}",
                "--timesteps",
                "64",
            ],
            "features_extractor_kwargs.bank_id = 'maybe': expected true or false",
        ),
        (["--hyperparams", "target_kl=-1"], "target_kl = -1: expected a finite number in (0, inf)"),
        (["--algo", "dqn", "--hyperparams", "exploration_final_eps=5"], "exploration_final_eps = 5: expected"),
        (["--hyperparams", "normalize={clip_obs: -1}"], "normalize.clip_obs = -1: expected a finite number > 0"),
        (["--hyperparams", "normalize=foo"], "normalize = 'foo': expected true, false or a mapping"),
        (["--hyperparams", "normalize={norm_obs: 1}"], "normalize.norm_obs = 1: expected true or false"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert train.main(argv + ["--out", str(tmp_path)] + FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(capsys) -> None:
    assert train.main(["--out", ""] + FAST) == 2  # after the parametrized cases' --out, it would be overridden
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out is empty; name the folder for runs" in err[0], err


def test_a_run_stopped_before_its_first_checkpoint_is_not_trained_into(tmp_path: Path, capsys) -> None:
    """What a killed run leaves (config.json, logs, no checkpoint) is neither overwritten nor mixed with a new run."""
    argv = ["--scenario", "steady", "--timesteps", "64", "--n-envs", "2", "--out", str(tmp_path)] + FAST
    assert train.main(argv + ["--hyperparams", "n_steps=32", "batch_size=64"]) == 0
    run = tmp_path / "ppo-steady-seed0"
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint
    (run / "checkpoints").mkdir()
    saved = (run / "config.json").read_text()
    capsys.readouterr()
    assert train.main(argv + ["--hyperparams", "n_steps=64", "batch_size=64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped before its first checkpoint" in err[0], err
    assert (run / "config.json").read_text() == saved and (run / "tb" / "run_1").is_dir()
    assert train.main(argv + ["--resume", "--hyperparams", "n_steps=32", "batch_size=64"]) == 2  # nothing to resume
    assert "no checkpoint" in capsys.readouterr().err
    (run / "config.json").write_text('{"policy_kwargs": {}}')  # a stray file is named, not a KeyError
    assert train.main(argv + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a train.py configuration (no algo, seed, n_envs, algo_kwargs)" in err[0], err


def test_a_refused_run_leaves_no_folder_behind(tmp_path: Path, capsys) -> None:
    """Settings only the algorithm can refuse are found after the run folder was made; it is removed again."""
    bad = ["--hyperparams", "policy_kwargs.features_extractor_class=per_bank",
           "policy_kwargs.features_extractor_kwargs={hidden: 0}"]  # fmt: skip
    out = tmp_path / "runs" / "deeper"
    assert train.main(["--scenario", "steady", "--timesteps", "64", "--out", str(out), *bad] + FAST) == 2
    assert "rejects these settings" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nor the folders made for it
    (tmp_path / "mine").mkdir()  # a folder the user had stays
    assert train.main(["--scenario", "steady", "--timesteps", "64", "--out", str(tmp_path / "mine"), *bad] + FAST) == 2
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "ppo-steady-seed0").exists()


def test_whole_number_layer_sizes_become_ints() -> None:
    args = train.parse_args(["--hyperparams", "policy_kwargs.net_arch={pi: [6.4e1], vf: [64.0, 32]}"])
    net_arch = resolve_config(TrainRequest(**vars(args)))["policy_kwargs"]["net_arch"]
    assert net_arch == {"pi": [64], "vf": [64, 32]} and all(type(n) is int for n in net_arch["pi"] + net_arch["vf"])


def test_repeated_hyperparams_flags_add_up(tmp_path: Path) -> None:
    args = train.parse_args(["--hyperparams", "gamma=0.9", "--timesteps", "64", "--hyperparams", "n_steps=64"])
    config = resolve_config(TrainRequest(**vars(args)))
    assert config["algo_kwargs"]["gamma"] == 0.9 and config["algo_kwargs"]["n_steps"] == 64


def test_unwritable_output_folder_exits_2(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the run folder's parent should be
    assert train.main(["--out", str(blocker), "--timesteps", "64"] + FAST) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


def test_first_ctrl_c_asks_training_to_stop_and_the_second_interrupts(capsys) -> None:
    # A KeyboardInterrupt raised wherever the main thread happens to be can be swallowed (numba's compiler) or
    # tear a file; the first Ctrl-C only sets a flag that the callback turns into a stop at the next step.
    before = signal.getsignal(signal.SIGINT)
    stops = CtrlCStops()
    with stops:
        assert stops._on_step()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stops.requested and not stops._on_step()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert "stopping at the next step" in capsys.readouterr().out


def test_ctrl_c_during_a_save_is_ignored() -> None:
    # Python's own handler first: a suite started in the background (``pytest &``) inherits SIGINT ignored
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ctrl_c_ignored():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # would raise KeyboardInterrupt here without the block
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler before the block
    finally:
        signal.signal(signal.SIGINT, outer)


@pytest.mark.slow
def test_ctrl_c_leaves_a_loadable_checkpoint(tiny: str, tmp_path: Path) -> None:
    # Step once here so numba's on-disk cache holds the kernel: the run below must spend its few seconds
    # training, not compiling (a checkout whose cache is cold compiles for about half a minute).
    warm = Simulator(tiny, num_envs=2)
    warm.reset([0, 1])
    warm.step(np.tile(status_quo("continuous", warm.n_banks), (2, 1)))
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "train.py"), "--scenario", tiny, "--timesteps", "10000000", "--n-envs", "2"]
    cmd += ["--out", str(out), "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1", "--eval-seed", "5000"]
    cmd += FAST
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "training ppo on tiny ..." once model.learn starts
    assert first.startswith("training"), first
    time.sleep(3.0)  # let it train a little
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "checkpoint saved" in stdout
    # the hint names the run, so it works from any folder and with any --out
    again = f"continue with: python train.py --algo ppo --scenario {tiny} --seed 0 --out {out} --resume"
    again += " --eval-seed 5000"  # not the default, so the hint repeats it
    assert again in stdout, stdout
    found = last_checkpoint(out / "ppo-tiny-seed0", "ppo", normalised=True, trust=False)
    assert found.steps > 0 and found.statistics is not None and not found.skipped
    assert found.model.num_timesteps == found.steps


# One bank facing twice its capacity for a few minutes: small enough to learn in seconds.
ONE_BANK = """
extends = "steady"
name = "one_bank"
description = "one bank, steady load near its capacity"
end_s = 300.0

[traffic]
base_rate = 1500.0

[[banks]]
name = "CCB"
share = 1.0
quick_share = 0.9
quick_success = 0.94
netbank_success = 0.65
quick_capacity = 1500.0
quick_declared = 1500.0
netbank_capacity = 200.0
netbank_declared = 200.0
"""


@pytest.mark.slow
def test_short_ppo_run_improves_on_random(tmp_path: Path) -> None:
    """A real learning check: PPO started far from the status quo (at "admit nothing", where the retired
    Box(0, 1) encoding put SB3's fresh policy) learns to beat random in 30k steps. From the status quo, the
    zero action, there would be little to learn in this world (1.25% failed)."""
    import torch as th
    from stable_baselines3.common.vec_env import VecNormalize

    from payroute_env.actions import encode
    from payroute_env.sb3_vec_env import make_sb3_vec_env

    scenario = tmp_path / "one_bank.toml"
    scenario.write_text(ONE_BANK)
    env = VecNormalize(make_sb3_vec_env(str(scenario), 8, seed=0), gamma=0.995)
    model = algo_class("ppo")("MlpPolicy", env, n_steps=128, batch_size=256, n_epochs=10, learning_rate=0.001,
                              gamma=0.995, gae_lambda=0.98, policy_kwargs={"log_std_init": -1.0}, seed=0,
                              device="cpu")  # fmt: skip
    with th.no_grad():
        model.policy.action_net.bias[0::4] = -1.0  # every bank's admit component: admit nothing
    seeds = list(range(1000, 1008))
    env.training = False
    start = failed_rate(lambda o: model.predict(env.normalize_obs(o), deterministic=True)[0], str(scenario), seeds)
    env.training = True
    model.learn(30_000)
    env.training = False
    learned = failed_rate(lambda o: model.predict(env.normalize_obs(o), deterministic=True)[0], str(scenario), seeds)
    rng = np.random.default_rng(0)  # random controls: admit rate and route weights uniform in [0, 1]
    random = failed_rate(lambda o: encode(rng.random((len(o), 1)), rng.random((len(o), 1, 3))), str(scenario), seeds)
    assert start > random + 0.1 and learned < random - 0.05, (start, learned, random)


def test_training_ends_with_the_evaluation_table(tiny: str, tmp_path: Path, capsys) -> None:
    """Without --no-eval, the agent is compared with every heuristic and the bound, as README shows."""
    from agents.deciders.heuristics import HEURISTICS

    out = tmp_path / "runs"
    argv = ["--scenario", tiny, "--timesteps", "256", "--n-envs", "2", "--out", str(out), "--eval-freq", "128"]
    argv += ["--eval-episodes", "2", "--no-progress", "--hyperparams", "n_steps=32", "batch_size=64"]
    assert train.main(argv) == 0
    printed = capsys.readouterr().out
    assert "fluid bound" in printed and "admit_all" in printed
    run = out / "ppo-tiny-seed0"
    results = json.loads((run / "evaluation" / "results.json").read_text())
    text = json.dumps(results)
    for name in [*HEURISTICS, "model.zip"]:
        assert name in text, name
    assert (run / "learning_curve.png").stat().st_size > 1000
    # the best periodic model is in the table too, read with the statistics saved when it was the best
    names = [p["name"] for p in results["policies"]]
    assert str(run / "best_model.zip") in names and str(run / "model.zip") in names
    best = load_policy(run / "best_model.zip", tiny)
    assert best.vecnormalize_path == run / "best_model.zip"  # its statistics inside it
    # the run folder itself names its final agent
    final = load_policy(run, tiny)
    assert final.path == run / "model.zip" and final.vecnormalize_path == run / "model.zip"
    assert best.statistics["obs_count"] < final.statistics["obs_count"]  # each with the statistics of its moment
    with pytest.raises(PolicyError, match="folder without model.zip"):
        load_policy(run / "checkpoints", tiny)


@pytest.mark.parametrize(
    ("algo", "overrides"),
    [
        ("sac", ["buffer_size=1e4", "learning_starts=1e2", "train_freq=[1, step]", "ent_coef=auto_0.01"]),
        ("td3", ["train_freq=[1, episode]", "target_policy_noise=0.2", "policy_delay=2", "gamma=0"]),
        ("dqn", ["target_update_interval=1e3", "gradient_steps=-1", "learning_rate=5e-4"]),
        (
            "ppo",
            [
                "n_steps=6.4e1",
                "clip_range=lin_0.2",
                "clip_range_vf=lin_0.2",
                "use_sde=true",
                "env_kwargs.action_mode=continuous",
            ],
        ),  # fmt: skip
        ("recurrent_ppo", ["policy_kwargs.lstm_hidden_size=32", "sde_sample_freq=4"]),
    ],
)
def test_rl_zoo_style_settings_are_accepted(algo: str, overrides: list[str], tiny: str) -> None:
    from agents.algorithms import algo_class
    from agents.training.hyperparams import schedules

    args = train.parse_args(["--algo", algo, "--scenario", tiny, "--action-mode", "continuous" if algo != "dqn"
                             else "discrete", "--hyperparams", *overrides])  # fmt: skip
    config = resolve_config(TrainRequest(**vars(args)))
    kwargs = schedules(config["algo_kwargs"])
    for key in ("buffer_size", "learning_starts", "n_steps", "target_update_interval"):
        if key in kwargs:
            assert type(kwargs[key]) is int, key  # 1e4 and 6.4e1 arrive as floats; SB3 wants ints
    if isinstance(config["algo_kwargs"].get("train_freq"), list):  # RL Zoo's [n, step] becomes SB3's tuple
        assert kwargs["train_freq"] == tuple(config["algo_kwargs"]["train_freq"])
    assert algo_class(algo)  # the class the settings were checked against


def test_rl_zoo_expressions_and_hooks_resolve_like_their_yaml_forms(tiny: str) -> None:
    """RL Zoo's ``policy_kwargs: "dict(...)"`` and ``normalize: "{...}"`` strings are read, not run, into the same
    settings as YAML mappings; its ``callback`` and ``vec_env_wrapper`` hooks set the status-quo start and the
    residual; ``env_kwargs.action_mode`` picks the action mode."""

    def config(*overrides: str, algo: str = "ppo") -> dict:
        args = train.parse_args(["--algo", algo, "--scenario", tiny, "--hyperparams", *overrides])
        return resolve_config(TrainRequest(**vars(args)))

    zoo = config('policy_kwargs=dict(net_arch=dict(pi=[32, -(-32)], vf=[16]), activation_fn=nn.ReLU, ortho_init=False)',
                 "normalize={'norm_obs': True, 'norm_reward': False}")  # fmt: skip
    mapped = config("policy_kwargs={net_arch: {pi: [32, 32], vf: [16]}, activation_fn: relu, ortho_init: false}",
                    "normalize={norm_obs: true, norm_reward: false}")  # fmt: skip
    assert zoo["policy_kwargs"] == mapped["policy_kwargs"] and zoo["normalize"] == mapped["normalize"]
    assert config(algo="sac")["start_at_status_quo"] is True  # sac.yml's callback
    assert config("callback=null", algo="sac")["start_at_status_quo"] is False
    assert config()["start_at_status_quo"] is False  # ppo.yml: SB3's fresh policy starts at the zero action
    residual = config(f"vec_env_wrapper={{{RESIDUAL_WRAPPER}: {{base: aimd, scale: 0.25}}}}",
                      f"callback=[{STATUS_QUO_CALLBACK}, {RECORD_RESIDUAL_CALLBACK}]")  # fmt: skip
    assert (residual["residual"], residual["residual_scale"]) == ("aimd", 0.25)
    assert residual["start_at_status_quo"] is False  # a residual starts at its heuristic (zero correction)
    assert config(algo="dqn")["action_mode"] == "discrete" and "action_mode" not in config(algo="dqn")["env_kwargs"]
    assert config("env_kwargs.action_mode=multidiscrete")["action_mode"] == "multidiscrete"


def test_hyperparameter_files_overrides_and_schedules() -> None:
    from agents.training.hyperparams import HyperparamError, apply_overrides, load_hyperparams, schedules

    for algo in ALGOS:
        hp = load_hyperparams(algo, "double11_2013")
        assert {"n_envs", "n_timesteps", "policy"} <= set(hp), algo
    hp = apply_overrides({"a": 1, "policy_kwargs": {"net_arch": [64]}}, ["a=2.5", "policy_kwargs.log_std_init=-2"])
    assert hp == {"a": 2.5, "policy_kwargs": {"net_arch": [64], "log_std_init": -2}}
    # YAML 1.1 reads 5e-4 as a string; the overrides read it as the number it spells, schedules stay strings
    hp = apply_overrides({}, ["learning_rate=5e-4", "n_timesteps=1e6", "clip_range=lin_2e-1", "x=[1e-3, abc]"])
    assert hp == {"learning_rate": 0.0005, "n_timesteps": 1e6, "clip_range": "lin_2e-1", "x": [0.001, "abc"]}
    lr = schedules({"learning_rate": "lin_0.001", "n_steps": 8})["learning_rate"]
    assert lr(1.0) == pytest.approx(0.001) and lr(0.25) == pytest.approx(0.00025)
    with pytest.raises(HyperparamError, match="lin_<number>"):
        schedules({"learning_rate": "cosine"})


@pytest.mark.parametrize("algo", ["ppo", "a2c", "recurrent_ppo", "sac", "td3"])
def test_a_fresh_policy_starts_at_the_status_quo(algo: str) -> None:
    """The zero action is the status quo, so SB3's own fresh Gaussian policies start there (within 0.01);
    ``start_at_status_quo`` brings the tanh actors (SAC, TD3: up to 0.12 off) there too."""
    from agents.training.status_quo import start_at_status_quo
    from payroute_env import actions
    from payroute_env.sb3_vec_env import make_sb3_vec_env

    env = make_sb3_vec_env("steady", 2, seed=0)
    obs = env.reset()
    model = algo_class(algo)("MlpLstmPolicy" if algo == "recurrent_ppo" else "MlpPolicy", env, device="cpu", seed=0)
    status_quo = actions.status_quo("continuous", 6)
    assert np.array_equal(status_quo, np.zeros(24))
    own = np.abs(model.predict(obs, deterministic=True)[0] - status_quo).max()
    if algo in ("sac", "td3"):
        assert own > 0.05
    else:
        assert own < 0.01  # SB3's convention: the neutral action at the centre of a symmetric box
    assert start_at_status_quo(model, 6)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], np.tile(status_quo, (2, 1)), atol=0.01)
    if algo == "sac":  # and explores around it with log_std_init's spread (0.05), not SB3's 1 before the tanh
        sampled = np.stack([model.predict(obs, deterministic=False)[0] for _ in range(50)])
        assert np.abs(sampled - status_quo).max() < 0.3
    if algo == "td3":  # the target actor starts as the actor
        np.testing.assert_allclose(model.actor_target(model.policy.obs_to_tensor(obs)[0]).detach().numpy(),
                                   model.actor(model.policy.obs_to_tensor(obs)[0]).detach().numpy())  # fmt: skip


def test_start_at_status_quo_keeps_sacs_gsde_mean_inside_its_clip() -> None:
    """With gSDE, SB3 clips SAC's mean to +-clip_mean before the tanh; a mean beyond the clip would never move."""
    import torch as th

    from agents.training.status_quo import start_at_status_quo
    from payroute_env import actions
    from payroute_env.sb3_vec_env import make_sb3_vec_env

    env = make_sb3_vec_env("steady", 2, seed=0)
    obs = env.reset()
    model = algo_class("sac")("MlpPolicy", env, device="cpu", seed=0, use_sde=True)
    assert start_at_status_quo(model, 6)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], np.tile(actions.status_quo("continuous", 6),
                               (2, 1)), atol=0.025)  # fmt: skip
    model.actor(model.policy.obs_to_tensor(obs)[0], deterministic=True).sum().backward()
    linear = model.actor.mu[0]
    assert isinstance(linear, th.nn.Linear) and linear.bias.grad is not None
    assert (linear.bias.grad.abs() > 1e-4).all()  # every action still has a gradient


def test_start_at_status_quo_leaves_discrete_policies_alone() -> None:
    from agents.training.status_quo import start_at_status_quo
    from payroute_env.sb3_vec_env import make_sb3_vec_env

    model = algo_class("dqn")("MlpPolicy", make_sb3_vec_env("steady", 1, action_mode="discrete"), device="cpu")
    assert not start_at_status_quo(model, 6)


@pytest.mark.slow
def test_td3_explores_with_the_configured_action_noise(tiny: str, tmp_path: Path) -> None:
    from stable_baselines3.common.noise import NormalActionNoise

    out = tmp_path / "runs"
    argv = ["--algo", "td3", "--scenario", tiny, "--timesteps", "64", "--n-envs", "2", "--out", str(out)]
    hp = ["learning_starts=32", "batch_size=16", "noise_std=0.3", "buffer_size=256"]
    assert train.main(argv + FAST + ["--hyperparams", *hp]) == 0
    run = out / "td3-tiny-seed0"
    assert json.loads((run / "config.json").read_text())["noise_type"] == "normal"
    noise = load_model("td3", run / "model.zip", device="cpu").action_noise
    noise = getattr(noise, "base_noise", noise)  # SB3 wraps it per environment (VectorizedActionNoise)
    assert isinstance(noise, NormalActionNoise)
    np.testing.assert_allclose(noise._sigma, np.full(24, 0.3))


def test_init_model_starts_a_new_run_from_another_models_weights_and_statistics(tiny: str, tmp_path: Path) -> None:
    small = ["--scenario", tiny, "--n-envs", "2", "--timesteps", "128"] + FAST
    assert train.main(small + ["--out", str(tmp_path / "a"), "--hyperparams", "n_steps=32", "batch_size=64"]) == 0
    source = tmp_path / "a" / "ppo-tiny-seed0"
    # learning_rate 0 keeps the weights as loaded, so the new run's model must equal the source's
    hp = ["--hyperparams", "n_steps=32", "batch_size=64", "learning_rate=0"]
    # a run folder stands for its model.zip, as in evaluate.py (the refusals below name the .zip itself)
    argv = small + ["--out", str(tmp_path / "b"), "--init-model", str(source)] + hp
    assert train.main(argv) == 0
    run = tmp_path / "b" / "ppo-tiny-seed0"
    assert json.loads((run / "config.json").read_text())["init_model"] == str(source / "model.zip")
    theirs = algo_class("ppo").load(source / "model.zip").policy.state_dict()
    ours = algo_class("ppo").load(run / "model.zip").policy.state_dict()
    assert theirs.keys() == ours.keys() and all(torch_equal(theirs[k], ours[k]) for k in theirs)
    # the observation statistics carry on from the source's instead of starting from scratch
    stats = [load_trained_model(d / "model.zip", "ppo")[1] for d in (source, run)]
    assert stats[1]["obs_count"] > stats[0]["obs_count"] + 100


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resume"], "--init-model starts a new run"),
        (["--hyperparams", "policy_kwargs.net_arch=[8]"], "does not fit this run's network"),
        (["--residual", "aimd"], "was trained with residual settings None"),
        (["--algo", "a2c"], "is a PPO model; this run trains A2C"),
        (["--hyperparams", "normalize=false"], "was trained on normalised observations; this run feeds raw ones"),
        (["--hyperparams", "normalize={norm_obs: false}"], "trained on normalised observations; this run feeds raw"),
    ],
)
def test_init_model_refuses_what_does_not_fit(extra: list[str], message: str, tiny: str, tmp_path: Path, capsys):
    small = ["--scenario", tiny, "--n-envs", "2", "--timesteps", "64"] + FAST
    assert train.main(small + ["--out", str(tmp_path / "a"), "--hyperparams", "n_steps=32", "batch_size=64"]) == 0
    source = tmp_path / "a" / "ppo-tiny-seed0" / "model.zip"
    capsys.readouterr()
    assert train.main(small + ["--out", str(tmp_path / "b"), "--init-model", str(source)] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_init_model_that_does_not_exist_exits_2(tmp_path: Path, capsys) -> None:
    assert train.main(["--out", str(tmp_path), "--init-model", str(tmp_path / "none.zip")] + FAST) == 2
    err = capsys.readouterr().err
    assert "--init-model" in err and "model file not found" in err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert train.main(["--out", str(tmp_path), "--init-model", str(empty)] + FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--init-model: {empty} is a folder without model.zip" in err[0], err


def test_periodic_evaluations_replay_the_same_episodes(tiny: str, tmp_path: Path) -> None:
    """On a randomised scenario each evaluation meets the same worlds: a frozen policy scores the same."""
    scenario = tmp_path / "tiny_random.toml"
    scenario.write_text(f'extends = "{tiny}"\nname = "tiny_random"\n[randomize]\npeak = 0.4\ncapacity = 0.5\n')
    argv = ["--scenario", str(scenario), "--timesteps", "256", "--n-envs", "2", "--out", str(tmp_path / "runs")]
    argv += ["--eval-freq", "64", "--no-progress", "--no-eval"]
    hp = ["n_steps=32", "batch_size=64", "learning_rate=0", "normalize=false"]  # a policy that cannot change
    assert train.main(argv + ["--hyperparams", *hp]) == 0
    curve = np.load(tmp_path / "runs" / "ppo-tiny_random-seed0" / "learning_curve.npz")
    rates = curve["failed_payment_rate"]
    assert len(rates) == 4 and np.all(rates == rates[0]), rates


def test_training_runs_from_python_as_from_the_command_line(tiny: str, tmp_path: Path) -> None:
    """``run_training(TrainRequest(...))`` (a notebook) is ``python train.py`` (the same run, bit for bit)."""
    from agents.training import run_training

    hp = ["n_steps=32", "batch_size=64", "n_epochs=1"]
    request = TrainRequest(scenario=tiny, timesteps=128, n_envs=2, out=str(tmp_path / "py"), hyperparams=hp,
                           no_eval=True, no_progress=True)  # fmt: skip
    run = run_training(request)
    argv = ["--scenario", tiny, "--timesteps", "128", "--n-envs", "2", "--out", str(tmp_path / "cli")]
    assert train.main(argv + ["--hyperparams", *hp] + FAST) == 0
    cli = tmp_path / "cli" / run.name
    ours, theirs = (json.loads((d / "config.json").read_text()) for d in (run, cli))
    assert {**ours, "run_dir": None} == {**theirs, "run_dir": None}
    a, b = (load_model("ppo", d / "model.zip", device="cpu").policy.state_dict() for d in (run, cli))
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)
    with pytest.raises(UsageError, match="--timesteps must be a positive whole number"):
        run_training(TrainRequest(scenario=tiny, timesteps=-1, out=str(tmp_path / "bad")))
    assert not (tmp_path / "bad").exists()
