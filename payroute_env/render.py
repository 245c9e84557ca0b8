"""Compact text dashboard of one step (``render_mode="ansi"``)."""

from __future__ import annotations

from .core import SEEN_FIELDS, CoreParams, CoreState

__all__ = ["ansi"]

_F = {name: i for i, name in enumerate(SEEN_FIELDS)}


def _clock(t_s: float) -> str:
    t = int(round(t_s)) % 86400
    return f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def server_status(state: CoreState, i: int, server: int) -> str:
    """``down`` during an outage, ``degraded`` under stress or while warming up, else ``up``."""
    if state.down_left[i, server] > 0:
        return "down"
    if state.stress[i, server] > 0.05 or state.warm[i, server] < 0.999:
        return "degraded"
    return "up"


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
