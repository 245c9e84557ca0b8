"""One episode's video per policy (``evaluate.py --video``): the first seed's ``rgb_array`` frames, streamed to
an MP4 as they are drawn (an episode's frames would take hundreds of MB held at once).

The encoder is ``imageio_ffmpeg``, which the ``video`` extra brings (``pip install payroute[video]``, with
moviepy); without it asking for a video is an ``EvaluationError``-style ``ValueError`` naming the extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FPS", "VideoWriter"]

FPS = 24  # frames per second: an hour of 5-second steps (744 frames) plays in 31 s


class VideoWriter:
    """``with VideoWriter(path) as write: write(frame)`` for every frame; the file is whole when the block ends."""

    def __init__(self, path: str | Path, fps: int = FPS) -> None:
        try:
            import imageio_ffmpeg  # the video extra: optional, so imported only when a video is asked for
        except ImportError:
            raise ValueError("--video needs the video extra: pip install 'payroute[video]' (moviepy)") from None
        self.path, self.fps, self._module = Path(path), fps, imageio_ffmpeg
        self._writer: Any = None

    def __enter__(self) -> VideoWriter:
        return self

    def __call__(self, frame: np.ndarray) -> None:
        if self._writer is None:  # the size comes with the first frame
            height, width = frame.shape[:2]
            self._writer = self._module.write_frames(str(self.path), (width, height), fps=self.fps,
                                                     macro_block_size=2)  # fmt: skip
            self._writer.send(None)  # start the encoder
        self._writer.send(np.ascontiguousarray(frame))

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
