"""Video where RL people record it: the rgb_array frames through Gymnasium's RecordVideo (single env and vector env)
and SB3's VecVideoRecorder (what RL Zoo's record_video uses), written by moviepy (the ``video`` extra)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RecordVideo
from gymnasium.wrappers.vector import RecordVideo as RecordVectorVideo
from moviepy import VideoFileClip
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecVideoRecorder

from payroute_env import ENV_IDS, render
from payroute_env.actions import status_quo
from payroute_env.sb3_vec_env import make_sb3_vec_env
from payroute_env.vector_env import PaymentRoutingVectorEnv


def frames_of(video: Path) -> tuple[int, tuple[int, int]]:
    """How many frames a video holds, and their (width, height)."""
    with VideoFileClip(str(video)) as clip:
        return sum(1 for _ in clip.iter_frames()), tuple(clip.size)


def test_record_video_writes_every_frame_of_an_episode(tiny: str, tmp_path: Path) -> None:
    env = gym.make("payroute/PaymentRouting-v0", scenario=tiny, render_mode="rgb_array")
    videos = tmp_path / "videos"  # a new folder: RecordVideo warns about overwriting an existing one
    env = RecordVideo(env, str(videos), episode_trigger=lambda episode: True, disable_logger=True)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(status_quo("continuous", 6))
        steps, done = steps + 1, terminated or truncated
    env.close()
    (video,) = videos.glob("*.mp4")
    count, size = frames_of(video)
    assert count == steps + 1  # the frame after reset, then one per step
    assert size == (render.frame_width(6), render.FRAME_H)


def test_the_vector_env_records_through_gymnasiums_vector_record_video(tiny: str, tmp_path: Path) -> None:
    envs = RecordVectorVideo(PaymentRoutingVectorEnv(3, tiny, render_mode="rgb_array"), str(tmp_path / "videos"),
                             episode_trigger=lambda episode: True)  # fmt: skip
    envs.reset(seed=1)
    for _ in range(10):
        envs.step(np.zeros((3, 24), dtype=np.float32))
    envs.close()
    (video,) = (tmp_path / "videos").glob("*.mp4")
    count, (width, height) = frames_of(video)
    assert count == 11 and width >= render.frame_width(6) and height >= render.FRAME_H  # the three frames tiled


def test_sb3_vec_video_recorder_records_the_adapter(tiny: str, tmp_path: Path) -> None:
    venv = make_sb3_vec_env(tiny, n_envs=2, seed=0, render_mode="rgb_array")
    venv = VecVideoRecorder(venv, str(tmp_path), record_video_trigger=lambda step: step == 0, video_length=12)
    venv.reset()
    for _ in range(15):
        venv.step(np.zeros((2, 24), dtype=np.float32))
    venv.close()
    (video,) = tmp_path.glob("*.mp4")
    count, size = frames_of(video)
    assert count == 13  # the frame after reset, then video_length steps
    assert size == (render.frame_width(6), 2 * render.FRAME_H)  # SB3 tiles the two frames, one above the other


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_every_id_records_through_make_vec_env_and_both_record_videos(env_id: str, tmp_path: Path) -> None:
    """SB3's make_vec_env with its defaults (it asks for rgb_array) and both RecordVideos, unmodified, on every id:
    a few frames each (the episodes are long)."""
    env = RecordVideo(gym.make(env_id, render_mode="rgb_array"), str(tmp_path / "single"), video_length=4,
                      episode_trigger=lambda episode: True, disable_logger=True)  # fmt: skip
    env.reset(seed=0)
    for _ in range(4):
        env.step(env.action_space.sample())
    env.close()
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", render_mode="rgb_array")
    vector = RecordVectorVideo(envs, str(tmp_path / "vector"), video_length=4, episode_trigger=lambda episode: True)
    vector.reset(seed=0)
    for _ in range(4):
        vector.step(vector.action_space.sample())
    vector.close()
    venv = VecVideoRecorder(make_vec_env(env_id, n_envs=2), str(tmp_path / "sb3"),
                            record_video_trigger=lambda step: step == 0, video_length=4)  # fmt: skip
    venv.reset()
    for _ in range(5):
        venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    venv.close()
    for folder in ("single", "vector", "sb3"):
        (video,) = (tmp_path / folder).glob("*.mp4")
        assert frames_of(video)[0] == 5, folder  # the reset frame and four steps


def test_evaluate_writes_each_policys_first_episode_as_a_video(tiny: str, tmp_path: Path) -> None:
    """``evaluate.py --video``: one MP4 per policy, named as its plots, with every step of the first seed."""
    import evaluate
    from payroute_env.scenario import load_scenario

    out = tmp_path / "results"
    argv = ["--scenario", tiny, "--policies", "admit_all,aimd", "--episodes", "2", "--out", str(out), "--quiet",
            "--no-bound", "--video"]  # fmt: skip
    assert evaluate.main(argv) == 0
    steps = load_scenario(tiny).n_steps
    for name in ("admit_all", "aimd"):
        count, size = frames_of(out / f"video_{name}.mp4")
        assert count == steps + 1 and size == (render.frame_width(6), render.FRAME_H)
