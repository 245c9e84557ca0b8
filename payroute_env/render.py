"""Dashboards of one step: text (``render_mode="ansi"``) and an RGB frame (``render_mode="rgb_array"``)."""

from __future__ import annotations

import functools
import math
import struct
import zlib

import numpy as np

from .core import OBS_BANK, SEEN_FIELDS, CoreParams, CoreState

__all__ = ["FailedRateTimelines", "ansi", "png", "rgb_array"]

_F = {name: i for i, name in enumerate(SEEN_FIELDS)}


def _clock(t_s: float) -> str:
    t = int(round(t_s)) % 86400
    return f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def server_status(state: CoreState, i: int, server: int) -> str:
    """``down`` during an outage, ``degraded`` under stress or while warming up, else ``up``."""
    return _status(state.down_left[i, server], state.stress[i, server], state.warm[i, server])


def _status(down_left: float, stress: float, warm: float) -> str:
    if down_left > 0:
        return "down"
    return "degraded" if stress > 0.05 or warm < 0.999 else "up"


def ansi(params: CoreParams, state: CoreState, i: int = 0) -> str:
    """One table: per bank offered, admitted, success %, queue and status; then the episode totals."""
    p, s = params, state
    t_s = p.scenario.start_s + float(s.t[i]) * p.dt
    head = (
        f"{p.scenario.name} step {int(s.t[i])}/{p.n_steps}  {_clock(t_s)}  "
        f"arrived {int(s.arrived[i])}  paid {int(s.succeeded[i])}  lost {int(s.lost[i])}"
    )
    rows = [head, f"{'bank':<8}{'offered':>9}{'admitted':>10}{'success%':>9}{'queue':>8}{'admit':>7}  status"]
    for b, name in enumerate(p.scenario.bank_names):
        offered, throttled = s.seen_bank[i, b, 0], s.seen_bank[i, b, 1]
        ch = s.seen_channel[i, b]
        done = ch[:, _F["succeeded"]].sum() + ch[:, _F["declined"]].sum() + ch[:, _F["timed_out"]].sum()
        done += ch[:, _F["rejected"]].sum()
        rate = f"{100 * ch[:, _F['succeeded']].sum() / done:8.1f}" if done > 0 else f"{'-':>8}"
        rows.append(
            f"{name:<8}{offered:9.0f}{offered - throttled:10.0f} {rate}{ch[:, _F['queue']].sum():8.0f}"
            f"{s.admit[i, b]:7.2f}  {server_status(s, i, b)}"
        )
    bal = s.seen_balance[i]
    rows.append(f"{'balance':<8}{bal[0]:9.0f}{bal[0]:10.0f} {'':>8}{bal[2]:8.0f}{1.0:7.2f}  up")
    rows.append(f"switch: {server_status(s, i, p.n_banks)}")
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------------ RGB frame
# One panel per bank, left to right in the scenario's order, then a strip for the shared switch; under them a
# bar of the episode's progress. A bank's panel (what a payment engineer watches on a surge night):
#
#   health strip   green up, amber degraded (stressed or warming up), red down
#   3 blue bars    queue depth of quick, switch (this bank's cards), netbank
#   3 orange bars  queue wait as a share of the channel's timeout, same order
#   1 grey bar     admit rate (full height: admit all)
#   1 stacked bar  route split of quick-enabled users: quick (teal), switch (purple), netbank (olive)
#
# Counts come from the observation (per step, scaled by B / norm), shown as 1 - exp(-x) so that a bar fills
# towards the top as a queue grows past the busiest step's mean demand. Only what the platform sees, plus the
# up/degraded/down status the text dashboard shows, is drawn.
#
# Under the panels, the whole width: the failed-payment rate so far (lost / arrived intents) on a timeline of the
# night, red, from 0 to TIMELINE_MAX (30%, twice the 2013 status quo's), with a grey mark every 10%; it shows the
# steps at which frames were drawn (``FailedRateTimelines``). At the bottom, the night's progress.

PANEL_W, BAR_W, BAR_H, STRIP_H, MARGIN, TIMELINE_H, TIMELINE_MAX = 64, 6, 120, 10, 4, 30, 0.3
_TIMELINE_Y = MARGIN + STRIP_H + MARGIN + BAR_H + MARGIN
FRAME_H = _TIMELINE_Y + TIMELINE_H + MARGIN + 6 + MARGIN
_BACKGROUND = (250, 250, 250)
_STATUS_RGB = {"up": (60, 170, 80), "degraded": (240, 170, 30), "down": (210, 40, 40)}
_QUEUE_RGB, _WAIT_RGB, _ADMIT_RGB = (50, 110, 200), (240, 130, 40), (120, 120, 120)
_ROUTE_RGB = ((40, 160, 160), (130, 80, 170), (150, 150, 50))
_TRACK_RGB = (225, 225, 225)
_FAILED_RGB, _GRID_RGB = (210, 40, 40), (190, 190, 190)


# where each bar of a bank's panel starts, from the panel's left margin (a gap between the groups)
_QUEUE_X = tuple(r * (BAR_W + 1) for r in range(3))
_WAIT_X = tuple((3 + r) * (BAR_W + 1) + 1 for r in range(3))
_ADMIT_X = 6 * (BAR_W + 1) + 2
_ROUTE_X = 7 * (BAR_W + 1) + 3
assert _ROUTE_X + BAR_W <= PANEL_W - MARGIN  # the panel holds its bars


def frame_width(n_banks: int) -> int:
    return PANEL_W * n_banks + PANEL_W // 2


def rgb_array(params: CoreParams, state: CoreState, i: int = 0, failed_so_far: np.ndarray | None = None) -> np.ndarray:
    """``uint8 [FRAME_H, frame_width(B), 3]``: the dashboard of environment ``i``'s last step.

    ``failed_so_far`` (``[n_steps + 1]``, NaN where unknown): the failed-payment rate so far at each step, for the
    timeline (``FailedRateTimelines.frame`` keeps it); without it the timeline is empty.
    """
    B = params.n_banks
    frame = _blank_frame(B).copy()
    record = state[i]  # one record: read once, not one batch-wide field per value drawn
    obs = record["obs"][: OBS_BANK * B].tolist()
    statuses = _statuses(record["down_left"].tolist(), record["stress"].tolist(), record["warm"].tolist())
    top, bars = MARGIN, MARGIN + STRIP_H + MARGIN
    for b in range(B):
        x0 = b * PANEL_W + MARGIN
        frame[top : top + STRIP_H, x0 : x0 + PANEL_W - 2 * MARGIN] = _STATUS_RGB[statuses[b]]
        o = OBS_BANK * b
        for r in range(3):
            _bar(frame, x0 + _QUEUE_X[r], bars, 1.0 - math.exp(-obs[o + 3 + 7 * r + 5]), _QUEUE_RGB)
            _bar(frame, x0 + _WAIT_X[r], bars, obs[o + 3 + 7 * r + 6], _WAIT_RGB)
        _bar(frame, x0 + _ADMIT_X, bars, obs[o + 24], _ADMIT_RGB)
        _stacked_bar(frame, x0 + _ROUTE_X, bars, obs[o + 25 : o + 28])
    x0 = B * PANEL_W + MARGIN
    frame[top : top + STRIP_H, x0 : x0 + PANEL_W // 2 - 2 * MARGIN] = _STATUS_RGB[statuses[B]]
    if failed_so_far is not None:
        _timeline(frame, B, failed_so_far)
    progress = min(float(record["t"]) / params.n_steps, 1.0)
    y = _TIMELINE_Y + TIMELINE_H + MARGIN
    frame[y : y + 6, MARGIN : MARGIN + int(round(progress * (frame.shape[1] - 2 * MARGIN)))] = _ADMIT_RGB
    return frame


def _timeline(frame: np.ndarray, n_banks: int, rates: np.ndarray, steps: np.ndarray | None = None) -> None:
    """Steps' rates as columns from the timeline's floor (the night's steps spread over the frame's width): the
    known ``steps`` of ``rates``, or every known one. A column is cleared to the blank frame's before drawing."""
    known = np.flatnonzero(~np.isnan(rates)) if steps is None else steps
    if not known.size:
        return
    width = frame.shape[1] - 2 * MARGIN
    xs = MARGIN + known * (width - 1) // max(len(rates) - 1, 1)
    area = frame[_TIMELINE_Y : _TIMELINE_Y + TIMELINE_H]  # a view: drawing into it draws the frame
    if steps is not None:
        area[:, xs] = _blank_frame(n_banks)[_TIMELINE_Y : _TIMELINE_Y + TIMELINE_H, xs]
    heights = np.rint(np.clip(rates[known] / TIMELINE_MAX, 0.0, 1.0) * TIMELINE_H).astype(int)
    filled = np.arange(TIMELINE_H)[:, None] >= TIMELINE_H - heights[None, :]  # [rows, known steps]
    rows, columns = np.nonzero(filled)
    area[rows, xs[columns]] = _FAILED_RGB


class FailedRateTimelines:
    """The failed-payment rate so far (lost / arrived intents) of each environment at every step a frame was drawn,
    for the frames' timeline. A front end keeps one and draws through ``frame``, which draws only the new step's
    column onto the environment's kept strip; an episode that starts again (its step count goes back) starts a
    clean timeline."""

    def __init__(self, num_envs: int, n_steps: int) -> None:
        self.rates = np.full((num_envs, n_steps + 1), np.nan)
        self._strips: list[np.ndarray | None] = [None] * num_envs  # each environment's timeline, drawn so far
        self._last = [-1] * num_envs

    def frame(self, params: CoreParams, state: CoreState, i: int) -> np.ndarray:
        """Record environment ``i``'s rate at its current step, then draw its frame with the timeline."""
        record = state[i]
        t, arrived = int(record["t"]), float(record["arrived"])
        row = self.rates[i]
        if t < self._last[i]:  # a new episode: the steps drawn belong to the one before
            row[:] = np.nan
            self._strips[i] = None
        row[t] = float(record["lost"]) / arrived if arrived > 0 else 0.0
        frame = rgb_array(params, state, i)
        if self._strips[i] is None:
            _timeline(frame, params.n_banks, row)
        else:
            frame[_TIMELINE_Y : _TIMELINE_Y + TIMELINE_H] = self._strips[i]
            _timeline(frame, params.n_banks, row, np.array([t]))
        self._strips[i] = frame[_TIMELINE_Y : _TIMELINE_Y + TIMELINE_H].copy()
        self._last[i] = t
        return frame


def _statuses(down_left: list[float], stress: list[float], warm: list[float]) -> list[str]:
    """``server_status`` of every server of one environment."""
    return [_status(d, s, w) for d, s, w in zip(down_left, stress, warm, strict=True)]


@functools.lru_cache(maxsize=8)
def _blank_frame(n_banks: int) -> np.ndarray:
    """The background with every bar's empty track and the progress track drawn (copied for each frame)."""
    frame = np.empty((FRAME_H, frame_width(n_banks), 3), dtype=np.uint8)
    frame[:] = _BACKGROUND
    top = MARGIN + STRIP_H + MARGIN
    for b in range(n_banks):
        x0 = b * PANEL_W + MARGIN
        for x in (*_QUEUE_X, *_WAIT_X, _ADMIT_X):  # the route bar is always full: no track
            frame[top : top + BAR_H, x0 + x : x0 + x + BAR_W] = _TRACK_RGB
    for level in np.arange(0.1, TIMELINE_MAX - 1e-9, 0.1):  # a grey mark every 10 points at the left edge
        y = _TIMELINE_Y + TIMELINE_H - int(round(level / TIMELINE_MAX * TIMELINE_H))
        frame[y, MARGIN : MARGIN + 6] = _GRID_RGB
    frame[_TIMELINE_Y + TIMELINE_H - 1, MARGIN : frame.shape[1] - MARGIN] = _GRID_RGB  # the timeline's floor
    y = _TIMELINE_Y + TIMELINE_H + MARGIN
    frame[y : y + 6, MARGIN : frame.shape[1] - MARGIN] = _TRACK_RGB
    frame.flags.writeable = False  # shared: every frame starts as a copy
    return frame


def _bar(frame: np.ndarray, x: int, top: int, level: float, rgb: tuple[int, int, int]) -> None:
    """A vertical bar filled from the bottom to ``level`` (clipped to [0, 1]) of its (already drawn) track."""
    h = int(round(min(max(level, 0.0), 1.0) * BAR_H))
    if h:
        frame[top + BAR_H - h : top + BAR_H, x : x + BAR_W] = rgb


def _stacked_bar(frame: np.ndarray, x: int, top: int, shares: list[float]) -> None:
    """Shares (summing to 1) stacked from the bottom, in ``_ROUTE_RGB``'s colours."""
    total = sum(shares) or 1.0
    bottom = top + BAR_H
    for share, rgb in zip(shares, _ROUTE_RGB, strict=True):
        h = int(round(share / total * BAR_H))
        frame[max(bottom - h, top) : bottom, x : x + BAR_W] = rgb
        bottom -= h


def png(frame: np.ndarray, scale: int = 1) -> bytes:
    """An ``rgb_array`` frame (``uint8 [H, W, 3]``) as PNG file bytes, each pixel ``scale`` x ``scale`` (for an
    image in a document; no imaging library needed)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or scale < 1:
        got = f"{frame.dtype} {frame.shape}, scale {scale}"
        raise ValueError(f"png takes a uint8 [H, W, 3] frame and a scale >= 1; got {got}")
    big = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    height, width = big.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), big.reshape(height, -1)], axis=1)  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )
