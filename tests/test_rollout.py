"""Rollout improvement (agents.analysis.rollout): lookahead on copies of the true state, not touching the episode."""

from __future__ import annotations

import numpy as np
import pytest

from agents.analysis import rollout
from agents.deciders import PolicyError, load_policy
from agents.deciders.heuristics import AdmitAll
from agents.evaluation import run_policy
from payroute_env.sampling import key_from_seed


def test_corrections_start_with_no_change_and_change_one_bank_at_a_time() -> None:
    deltas = rollout.corrections(6)
    assert deltas.shape == (37, 24)
    assert not deltas[0].any()
    changed_banks = [set(np.flatnonzero(row) // 4) for row in deltas[1:]]
    assert all(len(banks) == 1 for banks in changed_banks)
    assert [next(iter(b)) for b in changed_banks] == [b for b in range(6) for _ in range(6)]


def test_rollout_episode_reports_the_base_and_its_improvement(tiny: str) -> None:
    base = AdmitAll(tiny)
    r = rollout.rollout_episode(base, tiny, seed=3, horizon_s=60.0, block_s=20.0, futures=2)
    assert r.blocks == 10 and 0 <= r.corrected_blocks <= r.blocks  # 200 s in blocks of 20 s
    assert (
        r.base_failed_rate == run_policy(AdmitAll(tiny), tiny, [3], timeline=False).episodes[0]["failed_payment_rate"]
    )
    assert 0.0 <= r.rollout_failed_rate <= 1.0
    again = rollout.rollout_episode(base, tiny, seed=3, horizon_s=60.0, block_s=20.0, futures=2)
    assert (again.rollout_failed_rate, again.corrected_blocks) == (r.rollout_failed_rate, r.corrected_blocks)


def test_lookahead_never_disturbs_the_episode_nor_sees_its_future(tiny: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # with "no change" as the only candidate the rolled-out episode must be the base episode, bit for bit
    monkeypatch.setattr(rollout, "corrections", lambda n_banks: np.zeros((1, 4 * n_banks)))
    futures_keys: list[np.ndarray] = []
    replicate = rollout.core.replicate

    def recording(state, i, keys):
        futures_keys.append(np.asarray(keys).copy())
        return replicate(state, i, keys)

    monkeypatch.setattr(rollout.core, "replicate", recording)
    r = rollout.rollout_episode(AdmitAll(tiny), tiny, seed=4, horizon_s=40.0, block_s=20.0, futures=3)
    assert r.corrected_blocks == 0 and r.rollout_failed_rate == r.base_failed_rate
    # the futures draw from streams of their own, never the episode's (that would be seeing the real future)
    episode_key = key_from_seed(np.uint64(4))
    assert len(futures_keys) == r.blocks and not any((keys == episode_key).any() for keys in futures_keys)


def test_a_policy_with_memory_or_bad_settings_is_refused(tiny: str) -> None:
    with pytest.raises(PolicyError, match="memoryless"):
        rollout.rollout_episode(load_policy("success_rate_router", tiny), tiny, seed=0)
    for horizon_s, block_s, futures in ((10.0, 20.0, 8), (float("inf"), 20.0, 8), (60.0, 1.0, 8), (60.0, 20.0, 0)):
        with pytest.raises(ValueError, match="block_s <= horizon_s"):
            rollout.rollout_episode(AdmitAll(tiny), tiny, 0, horizon_s=horizon_s, block_s=block_s, futures=futures)


def test_cli(tiny: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--scenario", tiny, "--base", "admit_all", "--seeds", "1", "2", "--horizon-s", "40", "--block-s", "20"]
    assert rollout.main([*argv, "--futures", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("seed ") == 2 and "mean gain" in out and "2 seeds" in out
    assert rollout.main([*argv, "--seeds", "1", "-1"]) == 2  # refused before seed 1 is played
    err = capsys.readouterr()
    assert "--seeds must be >= 0; got -1" in err.err and "seed 1:" not in err.out
    assert rollout.main(["--scenario", tiny, "--base", "success_rate_router"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m agents.analysis.rollout: error:") and "memoryless" in err[0]
    assert rollout.main([*argv, "--futures", str(10**19)]) == 2  # was an OverflowError from numpy's repeat
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "futures in the lookahead" in err[0] and err[0].endswith("lower --futures"), err
