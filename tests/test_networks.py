"""agents.training.networks.PerBankExtractor: the observation layout it assumes, and a model that trains and reloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th

import train
from agents.deciders import load_policy
from agents.training.hyperparams import HyperparamError, policy_kwargs
from agents.training.networks import PerBankExtractor, observation_layout
from payroute_env import observations
from payroute_env.scenario import load_scenario


@pytest.mark.parametrize("internal", [False, True])
def test_layout_matches_the_observation_space(internal: bool) -> None:
    space = observations.observation_space(6, internal)
    assert observation_layout(space.shape[0]) == (6, internal)


def test_layout_rejects_other_sizes() -> None:
    with pytest.raises(ValueError, match="not a payroute observation"):
        observation_layout(100)


@pytest.mark.parametrize("internal", [False, True])
def test_split_puts_every_value_with_its_bank(internal: bool) -> None:
    """Value i of the observation is i; the split must give bank b exactly the indices named ``<bank b>.*``."""
    names = tuple(load_scenario("double11_2013").bank_names)
    feature_names = observations.feature_names(6, names, internal)
    space = observations.observation_space(6, internal)
    extractor = PerBankExtractor(space, hidden=4)
    obs = th.arange(space.shape[0], dtype=th.float32)[None]
    banks, glob = extractor.split(obs)
    for b, bank in enumerate(names):
        expected = [i for i, n in enumerate(feature_names) if n.startswith(f"{bank}.")]
        assert banks[0, b].tolist() == expected
    assert glob[0].tolist() == [i for i, n in enumerate(feature_names) if "." not in n]
    assert extractor(obs).shape == (1, extractor.features_dim) == (1, 6 * 4 + glob.shape[1])


def test_one_encoder_for_all_banks() -> None:
    """Two banks with the same values and the same bank-id weights get the same encoding."""
    extractor = PerBankExtractor(observations.observation_space(6, False), hidden=8)
    with th.no_grad():
        first_layer = extractor.encode[0]
        first_layer.weight[:, 28:34] = 0.0  # make the bank id irrelevant
    obs = th.rand(1, 172)
    obs[0, 28:56] = obs[0, 0:28]  # bank 1 sees what bank 0 sees
    out = extractor(obs)[0, :48].reshape(6, 8)
    th.testing.assert_close(out[0], out[1])
    assert not th.allclose(out[0], out[2])


def test_unknown_extractor_name_is_a_clear_error() -> None:
    with pytest.raises(HyperparamError, match="per_bank"):
        policy_kwargs({"features_extractor_class": "resnet"})


def test_ppo_with_the_per_bank_extractor_trains_saves_and_reloads(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    hp = ["n_steps=32", "batch_size=64", "policy_kwargs.features_extractor_class=per_bank"]
    argv = ["--scenario", "steady", "--timesteps", "128", "--n-envs", "2", "--out", str(out), "--no-eval"]
    assert train.main([*argv, "--no-progress", "--hyperparams", *hp]) == 0
    policy = load_policy(out / "ppo-steady-seed0" / "model.zip", "steady")
    assert isinstance(policy.model.policy.features_extractor, PerBankExtractor)
    obs = np.zeros((3, 172), dtype=np.float32)
    actions, _ = policy.predict(obs)
    assert actions.shape == (3, 24) and np.isfinite(actions).all()


def test_without_bank_id_swapping_two_banks_swaps_their_encodings() -> None:
    """bank_id=False: the encoder sees only what each bank shows, so it is permutation-equivariant."""
    extractor = PerBankExtractor(observations.observation_space(6, False), hidden=8, bank_id=False)
    obs = th.rand(2, 172)
    swapped = obs.clone()
    swapped[:, 0:28], swapped[:, 56:84] = obs[:, 56:84], obs[:, 0:28]  # banks 0 and 2 trade places
    with th.no_grad():
        out, out_swapped = extractor(obs)[:, :48].reshape(2, 6, 8), extractor(swapped)[:, :48].reshape(2, 6, 8)
    th.testing.assert_close(out_swapped[:, [2, 1, 0, 3, 4, 5]], out)
    with_id = PerBankExtractor(observations.observation_space(6, False), hidden=8)
    with th.no_grad():
        a, b = with_id(obs)[:, :48].reshape(2, 6, 8), with_id(swapped)[:, :48].reshape(2, 6, 8)
    assert not th.allclose(b[:, [2, 1, 0, 3, 4, 5]], a)  # with the id, bank identity matters
