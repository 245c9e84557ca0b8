"""Scenarios: plain TOML files validated into frozen dataclasses.

A scenario is everything the simulator needs to know about one evening: the traffic curve, the banks and
their channels, how users behave after a failure, and how fragile each bank core is. Every rate is per
second, every duration in seconds, every probability in [0, 1]; ``docs/MODEL.md`` gives the equations and
``payroute_env/scenarios/*.toml`` the figures with their sources.

``load_scenario`` accepts a built-in name (``double11_2013``) or a path to a TOML file. Anything wrong in
the file raises :class:`ScenarioError` naming the file, the field, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
import weakref
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import numpy as np

__all__ = [
    "BUILTIN_SCENARIOS",
    "Bank",
    "Balance",
    "ChannelTiming",
    "Fragility",
    "Randomize",
    "Scenario",
    "ScenarioError",
    "Surge",
    "Switch",
    "Traffic",
    "Users",
    "load_scenario",
    "scenario_from_dict",
]

BUILTIN_SCENARIOS: tuple[str, ...] = (
    "double11_2013",
    "double11_2016",
    "steady",
    "flash_sales",
    "outage_drill",
    "randomized",
)


class ScenarioError(ValueError):
    """A scenario file or table is invalid; the message names file, field, value and allowed range."""


def _rng(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict[str, Any]:
    """Field metadata: the allowed closed range [lo, hi] (``lo_open`` makes the lower end open)."""
    return {"range": (lo, hi, lo_open)}


PROB = _rng(0.0, 1.0)
NONNEG = _rng(0.0)
POS = _rng(0.0, lo_open=True)
# Time scales (seconds). The kernel divides by them and turns times into step and histogram indices, so they
# are kept where float64 arithmetic is exact enough and nothing overflows: a time scale below a millisecond
# (a thousandth of the shortest step, dt_s >= 0.1 s) means "instant" and a subnormal one would give 1 / t = inf;
# above 1e9 s (31 years, over a hundred times the longest episode) every figure a night can show is the same.
MIN_TIME_S, MAX_TIME_S = 1e-3, 1e9
DURATION = _rng(MIN_TIME_S, MAX_TIME_S)  # a positive time scale
# The surge curve's own time scales are only evaluated in numpy, once per scenario (Scenario.intent_rate): a
# nanosecond there writes a step ("jump at midnight"), the floor that the curve's own arithmetic uses.
CURVE_TIME = _rng(1e-9, MAX_TIME_S)
DELAY = _rng(0.0, MAX_TIME_S)  # a time that may be zero
# Exogenous outages per hour: one per millisecond (the shortest time scale) already means "always down", and
# a larger figure would overflow the per-step probability's arithmetic (1e308 * dt).
MAX_HAZARD_PER_HOUR = 3600.0 / MIN_TIME_S


@dataclass(frozen=True)
class Surge:
    """One traffic surge added on top of the base rate (a Double 11 midnight, a flash sale).

    The extra rate rises linearly to ``jump_fraction * peak_rate`` in ``jump_s`` seconds after
    ``start_s``, keeps rising linearly to ``peak_rate`` at ``peak_at_s``, holds until ``peak_until_s`` and
    then halves every ``half_life_s`` seconds. Times are seconds after midnight.
    """

    start_s: float
    peak_rate: float = field(metadata=NONNEG)
    jump_s: float = field(metadata=CURVE_TIME)
    jump_fraction: float = field(metadata=PROB)
    peak_at_s: float = field(metadata=DELAY)
    peak_until_s: float = field(metadata=DELAY)
    half_life_s: float = field(metadata=CURVE_TIME)


@dataclass(frozen=True)
class Traffic:
    """Payment intents per second: ``base_rate`` plus every surge."""

    base_rate: float = field(metadata=NONNEG)
    surges: tuple[Surge, ...] = ()


@dataclass(frozen=True)
class Users:
    """What a user does after a failed attempt (decline, timeout, reject or throttle).

    ``abandon`` and ``switch`` are probabilities; the rest retry the same bank after an exponential delay
    with mean ``retry_delay_s``. A switcher pays with the platform balance with probability
    ``switch_to_balance`` and otherwise with a card of another bank.
    """

    abandon: float = field(metadata=PROB)
    switch: float = field(metadata=PROB)
    switch_to_balance: float = field(metadata=PROB)
    retry_delay_s: float = field(metadata=DURATION)


@dataclass(frozen=True)
class Fragility:
    """How a server (bank core or the switch) degrades and collapses under overload.

    Stress grows at ``(load / capacity - 1) / collapse_s`` per second while overloaded and relaxes at
    ``(1 - load / capacity) / relax_s`` otherwise; so ``collapse_s`` is the time to an outage under twice
    the capacity (``inf`` = never collapses from load). Stress ``s`` in [0, 1] removes ``goodput_loss * s``
    of capacity and scales success by ``1 - decline_gain * s``. At ``s >= 1`` the server goes down for a
    uniform time in [outage_min_s, outage_max_s], rejecting everything, and restarts at ``warm_start`` of
    capacity, warming up linearly over ``warmup_s``. ``hazard_per_hour`` adds exogenous outages.
    """

    collapse_s: float = field(metadata=_rng(MIN_TIME_S))  # inf: never collapses from load
    relax_s: float = field(metadata=DURATION)
    goodput_loss: float = field(metadata=PROB)
    decline_gain: float = field(metadata=PROB)
    outage_min_s: float = field(metadata=DELAY)
    outage_max_s: float = field(metadata=DELAY)
    warm_start: float = field(metadata=_rng(0.0, 1.0, lo_open=True))
    warmup_s: float = field(metadata=DURATION)
    hazard_per_hour: float = field(metadata=_rng(0.0, MAX_HAZARD_PER_HOUR))


@dataclass(frozen=True)
class ChannelTiming:
    """User interaction time and the timeout after which a queued attempt fails."""

    interaction_s: float = field(metadata=DELAY)
    timeout_s: float = field(metadata=DURATION)


@dataclass(frozen=True)
class Bank:
    """A card issuer with its quick-payment and online-banking channels.

    ``*_capacity`` is what the channel really carries (attempts/s); ``*_declared`` is the contracted figure
    the platform knows. ``share`` is the bank's share of card payments, ``quick_share`` the share of its
    users whose card is enabled for quick payment (the rest can only use online banking).
    """

    name: str
    share: float = field(metadata=PROB)
    quick_share: float = field(metadata=PROB)
    quick_success: float = field(metadata=PROB)
    netbank_success: float = field(metadata=PROB)
    quick_capacity: float = field(metadata=NONNEG)
    quick_declared: float = field(metadata=NONNEG)
    netbank_capacity: float = field(metadata=NONNEG)
    netbank_declared: float = field(metadata=NONNEG)
    fragility: Fragility


@dataclass(frozen=True)
class Switch:
    """The shared cross-bank network (UnionPay-like) for quick-enabled cards of any bank."""

    capacity: float = field(metadata=NONNEG)
    declared: float = field(metadata=NONNEG)
    success_factor: float = field(metadata=PROB)
    interaction_s: float = field(metadata=DELAY)
    timeout_s: float = field(metadata=DURATION)
    fragility: Fragility


@dataclass(frozen=True)
class Balance:
    """The platform's own stored balance or credit (Yu'ebao/Huabei-like): no bank involved."""

    share: float = field(metadata=PROB)
    capacity: float = field(metadata=NONNEG)
    success: float = field(metadata=PROB)
    interaction_s: float = field(metadata=DELAY)
    timeout_s: float = field(metadata=DURATION)


@dataclass(frozen=True)
class Randomize:
    """Per-episode draws for robust training; all zero (the default) plays the scenario as written.

    ================== =============================================================================
    field              what is drawn per episode
    ================== =============================================================================
    peak               surge multiplier uniform in ``[1 - peak, 1 + peak]`` (the base rate is kept)
    capacity           each bank channel's and the switch's true capacity times ``[1 - w, 1 + w]``
    shares             each bank's card share times ``[1 - w, 1 + w]``, renormalised
    fragility          each server's stress growth rate (1 / collapse_s) times ``[1 - w, 1 + w]``
    quick_share        each bank's quick-enabled share times ``[1 - w, 1 + w]``, capped at 1
    balance_share_max  when above ``balance.share``: the balance share is uniform in
                       ``[balance.share, balance_share_max]`` (0 = fixed)
    shuffle_fragility  probability that the banks' collapse speeds are dealt to the banks in a random
                       order (before the ``fragility`` multiplier): no bank is known to be the fragile one
    fragile_banks      names of the banks that may get the scenario's fastest collapse speed (empty: any).
                       After the deal, a fastest speed that landed elsewhere is swapped with one of these
                       banks, drawn uniformly: with ``shuffle_fragility = 1`` the fragile bank is uniform
                       over them. Two scenarios with disjoint lists are disjoint world families (train on one,
                       evaluate on the other: docs/MODEL.md, "World families")
    ================== =============================================================================
    """

    peak: float = field(default=0.0, metadata=_rng(0.0, 0.9))
    capacity: float = field(default=0.0, metadata=_rng(0.0, 0.9))
    shares: float = field(default=0.0, metadata=_rng(0.0, 0.9))
    fragility: float = field(default=0.0, metadata=_rng(0.0, 0.9))
    quick_share: float = field(default=0.0, metadata=_rng(0.0, 0.9))
    balance_share_max: float = field(default=0.0, metadata=_rng(0.0, 0.95))
    shuffle_fragility: float = field(default=0.0, metadata=PROB)
    fragile_banks: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.fragile_banks) or any(
            getattr(self, f.name) > 0 for f in dataclasses.fields(self) if f.name != "fragile_banks"
        )


@dataclass(frozen=True)
class Scenario:
    """One evening to simulate. Times are seconds after midnight; the episode covers [start_s, end_s)."""

    name: str
    description: str
    dt_s: float = field(metadata=_rng(0.1, 600.0))
    start_s: float
    end_s: float
    max_attempts: int = field(metadata=_rng(1, 10))
    traffic: Traffic
    users: Users
    quick: ChannelTiming
    netbank: ChannelTiming
    switch: Switch
    balance: Balance
    banks: tuple[Bank, ...]
    randomize: Randomize = Randomize()

    @property
    def n_banks(self) -> int:
        return len(self.banks)

    @property
    def n_steps(self) -> int:
        return int(round((self.end_s - self.start_s) / self.dt_s))

    @property
    def bank_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.banks)

    def intent_rate(self, t_s: Any) -> Any:
        """Expected payment intents per second at time ``t_s`` (seconds after midnight; array-friendly)."""
        t = np.asarray(t_s, dtype=np.float64)
        rate = np.full_like(t, self.traffic.base_rate)
        for s in self.traffic.surges:
            x = t - s.start_s
            jump = s.jump_fraction * s.peak_rate * np.clip(x / s.jump_s, 0.0, 1.0)
            rise_len = max(s.peak_at_s - s.jump_s, 1e-9)
            rise = (1.0 - s.jump_fraction) * s.peak_rate * np.clip((x - s.jump_s) / rise_len, 0.0, 1.0)
            decay = np.exp2(-np.maximum(x - s.peak_until_s, 0.0) / s.half_life_s)
            rate = rate + np.where(x < 0, 0.0, (jump + rise) * decay)
        return rate

    def step_midpoints(self) -> Any:
        return self.start_s + (np.arange(self.n_steps) + 0.5) * self.dt_s

    @property
    def peak_intents_per_step(self) -> float:
        """Expected intents in the busiest step: the reward and observation scale."""
        return float(max(self.intent_rate(self.step_midpoints()).max() * self.dt_s, 1.0))


# --------------------------------------------------------------------------------------------- parsing


def _describe_range(lo: float | None, hi: float | None, lo_open: bool) -> str:
    left = "(" if lo_open else "["
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}]"


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The fields' types, resolved once per class (resolving the string annotations was most of a load)."""
    return get_type_hints(cls)


def _build(cls: type, table: Any, where: str, src: str, defaults: dict[str, Any] | None = None) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking unknown, missing, typed and ranged fields."""
    if not isinstance(table, dict):
        raise ScenarioError(f"{src}: {where or 'top level'} must be a table, got {table!r}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown == ["members"] and not where:  # a training mixture (agents/training/mixture.py), not one world
        raise ScenarioError(f"{src} is a mixture of worlds, for train.py only; name one of its members instead")
    if unknown:
        raise ScenarioError(f"{src}: unknown field {_join(where, unknown[0])!r}; allowed fields: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        path = _join(where, name)
        if name in table:
            raw = table[name]
        elif defaults is not None and name in defaults:
            raw = defaults[name]
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        else:
            raise ScenarioError(f"{src}: missing field {path!r}")
        values[name] = _convert(hints[name], raw, path, src, f.metadata)
    return cls(**values)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _convert(hint: Any, raw: Any, path: str, src: str, meta: Any) -> Any:
    if type(raw).__module__ == "numpy" and hasattr(raw, "item"):  # np.float32(5.0) in a Scenario built in code
        raw = raw.item()
    if dataclasses.is_dataclass(hint):
        return raw if isinstance(raw, hint) else _build(hint, raw, path, src)
    if get_origin(hint) is tuple:
        (item,) = [a for a in get_args(hint) if a is not Ellipsis]
        if not isinstance(raw, list | tuple):
            kind = "tables" if dataclasses.is_dataclass(item) else "strings" if item is str else "values"
            raise ScenarioError(f"{src}: {path} must be a list of {kind}, got {raw!r}")
        return tuple(_convert(item, r, f"{path}[{i}]", src, {}) for i, r in enumerate(raw))
    if hint is str:
        if not isinstance(raw, str):
            raise ScenarioError(f"{src}: {path} = {raw!r} must be a string")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ScenarioError(f"{src}: {path} = {raw!r} must be an integer")
        value: float = raw
    else:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ScenarioError(f"{src}: {path} = {raw!r} must be a number")
        value = float(raw)
        if math.isnan(value):
            raise ScenarioError(f"{src}: {path} = nan is not a number")
    lo, hi, lo_open = meta.get("range", (None, None, False))
    if (lo is not None and (value < lo or (lo_open and value == lo))) or (hi is not None and value > hi):
        raise ScenarioError(f"{src}: {path} = {raw!r} is out of range; allowed {_describe_range(lo, hi, lo_open)}")
    if hint is float and math.isinf(value) and path.split(".")[-1] != "collapse_s":
        raise ScenarioError(f"{src}: {path} = {raw!r} must be finite")
    return value


MAX_STEPS = 1_000_000  # an episode's steps: 58 days at 5 s, far beyond any surge
MAX_INTENTS = 1e12  # an episode's intents at most: 40,000 times Double 11 2013, far inside the 64-bit counters


def _check_consistency(sc: Scenario, src: str) -> None:
    """Cross-field rules that single-field ranges cannot express."""

    def bad(msg: str) -> None:
        raise ScenarioError(f"{src}: {msg}")

    if sc.end_s <= sc.start_s:
        bad(f"end_s = {sc.end_s:g} must be greater than start_s = {sc.start_s:g}")
    steps = (sc.end_s - sc.start_s) / sc.dt_s
    if sc.n_steps < 1:
        bad(f"(end_s - start_s) / dt_s = {steps:g} must give at least one step")
    if steps > MAX_STEPS:  # per-step arrays are allocated up front; 1e12 s would ask for terabytes
        bad(f"(end_s - start_s) / dt_s = {steps:g} steps; at most {MAX_STEPS:,} are allowed")
    if abs(steps - sc.n_steps) > 1e-6:  # else the episode would silently end before (or after) end_s
        bad(f"end_s - start_s = {sc.end_s - sc.start_s:g} s must be a whole number of steps of dt_s = {sc.dt_s:g} s")
    if not sc.banks:
        bad("banks must list at least one bank")
    names = [b.name for b in sc.banks]
    if any(not name.strip() for name in names):
        bad(f"banks[].name must not be empty, got {names}")
    if len(set(names)) != len(names):
        bad(f"banks[].name must be unique, got {names}")
    total = sum(b.share for b in sc.banks)
    if abs(total - 1.0) > 1e-6:
        bad(f"banks[].share must sum to 1, got {total:.6g} ({', '.join(f'{b.name}={b.share:g}' for b in sc.banks)})")
    u = sc.users
    if u.abandon + u.switch > 1.0 + 1e-12:
        bad(f"users.abandon + users.switch = {u.abandon + u.switch:g} must be <= 1 (the rest retry)")
    for i, s in enumerate(sc.traffic.surges):
        if not s.jump_s <= s.peak_at_s <= s.peak_until_s:
            bad(
                f"traffic.surges[{i}] needs jump_s <= peak_at_s <= peak_until_s, got "
                f"{s.jump_s:g}, {s.peak_at_s:g}, {s.peak_until_s:g}"
            )
    rz = sc.randomize
    # the most intents an episode could draw: every surge at its peak the whole night, randomised upwards
    most = (sc.traffic.base_rate + (1.0 + rz.peak) * sum(s.peak_rate for s in sc.traffic.surges)) * (
        sc.end_s - sc.start_s
    )
    if most > MAX_INTENTS:
        bad(
            f"traffic rates allow up to {most:.3g} intents per episode (base_rate + peak_rate for the whole "
            f"night); at most {MAX_INTENTS:.0e} are allowed (the counters are 64-bit integers)"
        )
    if 0.0 < rz.balance_share_max < sc.balance.share:
        bad(
            f"randomize.balance_share_max = {rz.balance_share_max:g} must be 0 (fixed) or >= balance.share = "
            f"{sc.balance.share:g}"
        )
    unknown = [name for name in rz.fragile_banks if name not in names]
    if unknown:
        bad(f"randomize.fragile_banks names {unknown[0]!r}, not a bank; the banks are {', '.join(names)}")
    if len(set(rz.fragile_banks)) != len(rz.fragile_banks):
        bad(f"randomize.fragile_banks must name each bank once, got {list(rz.fragile_banks)}")
    frags = [(f"banks[{i}].fragility", b.fragility) for i, b in enumerate(sc.banks)]
    for where, f in [*frags, ("switch.fragility", sc.switch.fragility)]:
        if f.outage_max_s < f.outage_min_s:
            bad(f"{where}.outage_max_s = {f.outage_max_s:g} must be >= outage_min_s = {f.outage_min_s:g}")


def scenario_from_dict(data: dict[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a parsed TOML document into a :class:`Scenario`.

    A top-level ``[fragility]`` table gives defaults that each ``[banks.fragility]`` (and
    ``[switch.fragility]``) may override field by field.
    """
    data = dict(data)
    default_frag = data.pop("fragility", None)
    if default_frag is not None:
        if not isinstance(default_frag, dict):
            raise ScenarioError(f"{source}: fragility must be a table, got {default_frag!r}")
        data["banks"] = [_with_fragility(b, default_frag) for b in data.get("banks", [])]
        if isinstance(data.get("switch"), dict):
            data["switch"] = _with_fragility(data["switch"], default_frag)
    sc = _build(Scenario, data, "", source)
    _check_consistency(sc, source)
    _CHECKED[id(sc)] = sc
    return sc


# Scenarios built by scenario_from_dict, by id: checked once, where they entered, and trusted after that (they are
# frozen all the way down). A Scenario made another way (dataclasses.replace) is checked when it is loaded.
_CHECKED: weakref.WeakValueDictionary[int, Scenario] = weakref.WeakValueDictionary()


def _with_fragility(table: Any, default: dict[str, Any]) -> Any:
    if not isinstance(table, dict):
        return table
    own = table.get("fragility", {})
    merged = {**default, **own} if isinstance(own, dict) else own
    return {**table, "fragility": merged}


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """Return the validated scenario for a built-in name, a TOML file path or a ``Scenario``.

    A scenario is checked once, where it enters: a ``Scenario`` this module built (from a name, a file or a
    dict) comes back as it is. Any other ``Scenario`` object (e.g. one made with ``dataclasses.replace``) gets
    the checks a TOML file gets; the checked copy is returned (equal to it, with numpy numbers turned into
    Python ones).
    """
    if isinstance(name_or_path, Scenario) and _CHECKED.get(id(name_or_path)) is name_or_path:
        return name_or_path
    if isinstance(name_or_path, Scenario):
        return scenario_from_dict(dataclasses.asdict(name_or_path), f"Scenario {name_or_path.name!r}")
    source, text, base_dir = _read(str(name_or_path))
    data = _resolve_extends(_parse(text, source), source, base_dir, seen=(source,))
    return scenario_from_dict(data, source)


def _read(name_or_path: str) -> tuple[str, str, Path | None]:
    """(source label, text, folder for relative ``extends``) of a built-in name or a file path."""
    if name_or_path in BUILTIN_SCENARIOS:
        res = resources.files("payroute_env") / "scenarios" / f"{name_or_path}.toml"
        return f"{name_or_path}.toml", res.read_text(encoding="utf-8"), None
    path = Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(
            f"unknown scenario {name_or_path!r}: not a built-in ({', '.join(BUILTIN_SCENARIOS)}) and no such TOML file"
        )
    try:
        return str(path), path.read_text(encoding="utf-8"), path.parent
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc}") from None


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: malformed TOML: {exc}") from None


def _resolve_extends(data: dict[str, Any], source: str, base_dir: Path | None, seen: tuple[str, ...]) -> dict:
    """``extends = "double11_2013"`` (or a path): start from that scenario and override table by table."""
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ScenarioError(f"{source}: extends = {parent!r} must be a scenario name or a TOML path")
    data_parent = parent  # as written in the file
    if parent not in BUILTIN_SCENARIOS and base_dir is not None and not Path(parent).is_absolute():
        parent = str(base_dir / parent)
    try:
        psource, ptext, pdir = _read(parent)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: extends = {data_parent!r}: {exc}") from None
    if psource in seen:
        raise ScenarioError(f"{source}: extends = {parent!r} makes a cycle ({' -> '.join((*seen, psource))})")
    base = _resolve_extends(_parse(ptext, psource), psource, pdir, (*seen, psource))
    return _merge(base, data)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (numbers, strings, lists such as ``banks``) is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
