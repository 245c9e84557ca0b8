"""Model files (agents/model_files.py): loading never runs code from a file unless trusted, the blueprint rebuilds
every algorithm exactly, statistics and replay buffers round-trip as data, and writes are whole or nothing."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.algorithms import ALGOS, algo_class, load_model
from agents.deciders import PolicyError, load_policy
from agents.deciders.convert import convert
from agents.model_files import (
    BLUEPRINT_ENTRY,
    UntrustedModelError,
    load_replay_buffer,
    load_trained_model,
    read_statistics,
    read_statistics_file,
    save_model,
    save_replay_buffer,
    statistics_of,
    vecnormalize_from,
    write_atomically,
)
from agents.training.hyperparams import policy_kwargs, schedules
from payroute_env import PaymentRoutingEnv

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this makes the folder ``marker``: proof that code from a file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def _crafted(zip_path: Path, out: Path, marker: Path, key: str, keep_blueprint: bool = True) -> Path:
    """A copy of ``zip_path`` whose ``data`` setting ``key`` is a cloudpickle that makes ``marker`` when loaded."""
    with zipfile.ZipFile(zip_path) as source:
        entries = {item.filename: source.read(item) for item in source.infolist()}
    data = json.loads(entries["data"])
    data[key] = {":type:": "<class 'builtins.object'>", ":serialized:": base64.b64encode(
        cloudpickle.dumps(_Payload(marker))).decode()}  # fmt: skip
    entries["data"] = json.dumps(data).encode()
    if not keep_blueprint:
        entries.pop(BLUEPRINT_ENTRY)
    with zipfile.ZipFile(out, "w") as target:
        for name, content in entries.items():
            target.writestr(name, content)
    return out


@pytest.fixture
def ppo_zip(tmp_path: Path, tiny: str) -> Path:
    from stable_baselines3 import PPO

    path = tmp_path / "ppo.zip"
    save_model(PPO("MlpPolicy", PaymentRoutingEnv(tiny), n_steps=32, batch_size=32, device="cpu", seed=0), path)
    return path


def test_a_crafted_zip_runs_no_code_unless_trusted(ppo_zip: Path, tmp_path: Path, tiny: str) -> None:
    marker = tmp_path / "ran"
    # a pickled setting the blueprint rebuilds is never unpickled: the file loads, the payload stays inert
    swapped = _crafted(ppo_zip, tmp_path / "swapped.zip", marker, "policy_class")
    assert load_policy(swapped, tiny).algorithm == "ppo" and not marker.exists()
    # one the blueprint does not know, or any without a blueprint, refuses the file before anything is read
    for name, key, blueprint in (("extra.zip", "evil", True), ("bare.zip", "policy_class", False)):
        crafted = _crafted(ppo_zip, tmp_path / name, marker, key, keep_blueprint=blueprint)
        with pytest.raises(PolicyError, match="--trust-model"):
            load_policy(crafted, tiny)
        assert not marker.exists()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "evaluate.py"), "--scenario", tiny, "--policies", str(crafted), "--episodes",
             "1", "--no-bound", "--no-plots", "--quiet", "--out", str(tmp_path / "out")],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2 and "--trust-model" in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert not marker.exists()
    # the payload is real: the trusting reader runs it (so the checks above could fail)
    with pytest.raises(PolicyError):  # what it made is no policy class; the damage is done before
        load_policy(_crafted(ppo_zip, tmp_path / "trusted.zip", marker, "policy_class"), tiny, trust=True)
    assert marker.exists()


def test_the_analysis_commands_refuse_a_crafted_zip_in_one_line(
    ppo_zip: Path, tmp_path: Path, tiny: str, capsys
) -> None:
    from agents.analysis import open_loop, rollout

    marker = tmp_path / "ran"
    crafted = _crafted(ppo_zip, tmp_path / "bare.zip", marker, "policy_class", keep_blueprint=False)
    for main, argv in (
        (rollout.main, ["--base", str(crafted), "--scenario", tiny, "--seeds", "0"]),
        (open_loop.main, ["--init", str(crafted), "--scenario", tiny, "--iterations", "1"]),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "--trust-model" in err and len(err.splitlines()) == 1 and not marker.exists()
    # with the flag the file is read as SB3 reads it, pickles and all: the payload runs
    assert rollout.main(["--base", str(crafted), "--scenario", tiny, "--seeds", "0", "--trust-model"]) == 2
    assert marker.exists()


def test_a_crafted_statistics_pickle_runs_no_code_unless_trusted(ppo_zip: Path, tmp_path: Path, tiny: str) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(ppo_zip, folder / "model.zip")
    (folder / "model_vecnormalize.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(PolicyError, match="model_vecnormalize.pkl: VecNormalize statistics as a pickle"):
        load_policy(folder, tiny)
    assert not marker.exists()
    with pytest.raises(PolicyError, match="not payroute's VecNormalize statistics|cannot read"):
        load_policy(folder, tiny, trust=True)
    assert marker.exists()


def _models(tiny: str) -> dict[str, object]:
    """One model of every algorithm, with settings a blueprint must carry: schedules, networks, noise, buffers."""
    from stable_baselines3.common.noise import NormalActionNoise

    def net() -> dict:  # a fresh dict each: SB3 writes into the one it is given (use_sde)
        return policy_kwargs({"net_arch": [16], "activation_fn": "relu"})

    extractor = policy_kwargs({"features_extractor_class": "per_bank", "features_extractor_kwargs": {"hidden": 4}})
    box, discrete = PaymentRoutingEnv(tiny), PaymentRoutingEnv(tiny, action_mode="discrete")
    n = box.action_space.shape[0]
    kw = {"device": "cpu", "seed": 3}
    return {
        "ppo": algo_class("ppo")("MlpPolicy", box, n_steps=32, batch_size=32, policy_kwargs=extractor, **kw,
                                 **schedules({"learning_rate": "lin_3e-4", "clip_range": "lin_0.2"})),
        "a2c": algo_class("a2c")("MlpPolicy", box, n_steps=8, policy_kwargs=net(), **kw),
        "sac": algo_class("sac")("MlpPolicy", box, buffer_size=100, policy_kwargs=net(), **kw),
        "td3": algo_class("td3")("MlpPolicy", box, buffer_size=100, train_freq=(2, "episode"), **kw,
                                 action_noise=NormalActionNoise(np.zeros(n), 0.3 * np.ones(n))),
        "dqn": algo_class("dqn")("MlpPolicy", discrete, buffer_size=100, policy_kwargs=net(), n_steps=3, **kw),
        "recurrent_ppo": algo_class("recurrent_ppo")("MlpLstmPolicy", box, n_steps=32, batch_size=32, **kw),
    }  # fmt: skip


def test_the_blueprint_rebuilds_every_algorithm_as_sb3_reads_it(tiny: str, tmp_path: Path) -> None:
    models = _models(tiny)
    assert sorted(models) == sorted(ALGOS)
    obs = np.stack([PaymentRoutingEnv(tiny).reset(seed=s)[0] for s in range(3)])
    for algo, model in models.items():
        path = save_model(model, tmp_path / f"{algo}.zip")
        ours, _ = load_trained_model(path, algo)  # from the blueprint
        theirs = load_model(algo, path, device="cpu")  # SB3's own reading, pickles included
        assert type(ours.policy) is type(theirs.policy) and ours.policy_kwargs == theirs.policy_kwargs, algo
        assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space
        a, b = ours.policy.state_dict(), theirs.policy.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), algo
        for progress in (1.0, 0.25):
            assert ours.lr_schedule(progress) == theirs.lr_schedule(progress), algo
            if hasattr(theirs, "clip_range"):
                assert ours.clip_range(progress) == theirs.clip_range(progress), algo
        for key in ("train_freq", "replay_buffer_class", "rollout_buffer_class", "n_steps", "gamma"):
            assert getattr(ours, key, None) == getattr(theirs, key, None), (algo, key)
        if algo == "td3":
            noise = getattr(ours.action_noise, "base_noise", ours.action_noise)
            np.testing.assert_array_equal(noise._sigma, np.full(noise._sigma.shape, 0.3))
        assert np.array_equal(ours.predict(obs, deterministic=True)[0], theirs.predict(obs, deterministic=True)[0])
    assert models["ppo"].lr_schedule(0.5) == pytest.approx(1.5e-4)  # the linear schedule itself, not a constant


def test_statistics_round_trip_as_data_and_rebuild_a_vecnormalize(tiny: str, tmp_path: Path) -> None:
    venv = VecNormalize(DummyVecEnv([lambda: PaymentRoutingEnv(tiny)]), clip_obs=7.0, gamma=0.95)
    venv.reset()
    for _ in range(4):
        obs, *_ = venv.step(np.zeros((1, venv.action_space.shape[0]), dtype=np.float32))
    stats = read_statistics(json.loads(json.dumps(statistics_of(venv))), "test")
    rebuilt = vecnormalize_from(stats, DummyVecEnv([lambda: PaymentRoutingEnv(tiny)]), training=False)
    raw = venv.get_original_obs()
    assert rebuilt.clip_obs == 7.0 and rebuilt.gamma == 0.95 and rebuilt.obs_rms.count == venv.obs_rms.count
    np.testing.assert_array_equal(rebuilt.normalize_obs(raw), venv.normalize_obs(raw))
    for broken in ({**statistics_of(venv), "format": 9}, {**statistics_of(venv), "clip_obs": "x"}, [1, 2]):
        with pytest.raises(ValueError, match="not payroute's VecNormalize statistics"):
            read_statistics(broken, "test")


def test_a_replay_buffer_round_trips_as_arrays(tiny: str, tmp_path: Path) -> None:
    sac = _models(tiny)["sac"]
    sac.learn(40)
    save_replay_buffer(sac, tmp_path / "buffer.npz")
    fresh = _models(tiny)["sac"]
    load_replay_buffer(fresh, tmp_path / "buffer.npz")
    for key in ("observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(fresh.replay_buffer, key), getattr(sac.replay_buffer, key))
    assert fresh.replay_buffer.pos == sac.replay_buffer.pos == 40 and fresh.replay_buffer.size() == 40
    with zipfile.ZipFile(tmp_path / "buffer.npz") as zf:  # no object arrays: np.load(allow_pickle=False) reads it
        assert all(name.endswith(".npy") for name in zf.namelist())


def test_a_write_is_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), write_atomically(target) as partial:
        partial.write_text("half of the new")
        raise RuntimeError("killed here")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    with write_atomically(target) as partial:
        partial.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_older_files_load_when_trusted_and_once_converted_without(tiny: str, tmp_path: Path) -> None:
    """A run folder as train.py wrote it before agents.model_files: plain SB3 zips, VecNormalize pickles."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    env = DummyVecEnv([lambda: PaymentRoutingEnv(tiny)])
    venv = VecNormalize(env)
    model = algo_class("ppo")("MlpPolicy", venv, n_steps=32, batch_size=32, device="cpu", seed=0)
    model.learn(32)
    model.save(run / "model.zip")
    venv.save(str(run / "vecnormalize.pkl"))
    model.save(run / "checkpoints" / "rl_model_32_steps.zip")
    venv.save(str(run / "checkpoints" / "rl_model_vecnormalize_32_steps.pkl"))
    (run / "config.json").write_text(json.dumps({"algo": "ppo", "algo_kwargs": {}, "normalize": True}))
    with pytest.raises(PolicyError, match="saved without payroute's blueprint.*agents.deciders.convert"):
        load_policy(run, tiny)
    trusted = load_policy(run, tiny, trust=True)
    assert convert(run) == [run / "model.zip", run / "checkpoints" / "rl_model_32_steps.zip"]
    converted = load_policy(run, tiny)
    assert converted.vecnormalize_path == run / "model.zip"  # the statistics now inside
    obs = np.stack([PaymentRoutingEnv(tiny).reset(seed=s)[0] for s in range(2)])
    np.testing.assert_array_equal(converted.predict(obs)[0], trusted.predict(obs)[0])
    with pytest.raises(UntrustedModelError):  # the pickles beside it are never read again without trust
        read_statistics_file(run / "vecnormalize.pkl")


def test_a_pickled_replay_buffer_converts_to_arrays_that_resume_without_trust(tiny: str, tmp_path: Path) -> None:
    from agents.training.checkpoints import continue_replay_buffer

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    sac = algo_class("sac")(
        "MlpPolicy", PaymentRoutingEnv(tiny), learning_starts=10, buffer_size=64, device="cpu", seed=0
    )  # a small buffer: SB3 allocates (and pickles) all of it
    sac.learn(40)
    sac.save(run / "checkpoints" / "rl_model_40_steps.zip")
    sac.save_replay_buffer(run / "checkpoints" / "rl_model_replay_buffer_40_steps.pkl")  # SB3's own pickle
    fresh = algo_class("sac")("MlpPolicy", PaymentRoutingEnv(tiny), buffer_size=64, device="cpu", seed=1)
    with pytest.raises(UntrustedModelError, match="--trust-model"):
        continue_replay_buffer(fresh, run, 40, trust=False)
    npz = run / "checkpoints" / "rl_model_replay_buffer_40_steps.npz"
    assert convert(run) == [run / "checkpoints" / "rl_model_40_steps.zip", npz]
    assert continue_replay_buffer(fresh, run, 40, trust=False) == 40
    for key in ("observations", "next_observations", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(getattr(fresh.replay_buffer, key), getattr(sac.replay_buffer, key))
    assert convert(run) == [run / "checkpoints" / "rl_model_40_steps.zip"]  # a converted buffer is left alone


def test_the_convert_command_says_what_it_did_and_refuses_in_one_line(ppo_zip: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "agents.deciders.convert"]
    done = subprocess.run([*command, str(ppo_zip)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == f"converted {ppo_zip}", done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([*command, str(empty)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith("python -m agents.deciders.convert: error:") and "without model.zip" in bad.stderr
