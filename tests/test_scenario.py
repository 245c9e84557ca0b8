"""Scenarios: the six built-ins load and agree on their banks; bad input raises ScenarioError naming the field."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import builtin_dict, builtin_text, scenario_dict

import payroute_env
from payroute_env import BUILTIN_SCENARIOS, PaymentRoutingEnv, ScenarioError, load_scenario
from payroute_env.scenario import Scenario, scenario_from_dict

EXPECTED_BUILTINS = {"double11_2013", "double11_2016", "steady", "flash_sales", "outage_drill", "randomized"}


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, old: str, new: str) -> str:
    """Replace one exact occurrence of ``old`` (the test is wrong if the builtin text changed)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the builtin text"
    return text.replace(old, new)


# ------------------------------------------------------------------------------------------ built-ins


def test_builtin_list_is_the_six_of_the_design() -> None:
    assert set(BUILTIN_SCENARIOS) == EXPECTED_BUILTINS
    assert len(BUILTIN_SCENARIOS) == 6


@pytest.mark.parametrize("name", BUILTIN_SCENARIOS)
def test_builtin_loads_and_is_consistent(name: str) -> None:
    sc = load_scenario(name)
    assert isinstance(sc, Scenario)
    assert sc.name == name
    assert sc.n_banks == 6
    assert sc.n_steps >= 1
    assert sc.n_steps == round((sc.end_s - sc.start_s) / sc.dt_s)
    assert math.isclose(sum(b.share for b in sc.banks), 1.0, abs_tol=1e-6)
    for b in sc.banks:
        assert b.quick_capacity >= 0 and b.netbank_capacity >= 0
        assert 0 <= b.quick_success <= 1 and 0 <= b.netbank_success <= 1
    assert sc.peak_intents_per_step > 0
    # frozen dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.dt_s = 1.0  # type: ignore[misc]


def test_builtins_share_the_same_six_banks_in_the_same_order() -> None:
    names = {name: load_scenario(name).bank_names for name in BUILTIN_SCENARIOS}
    reference = names["double11_2013"]
    assert len(reference) == 6 and len(set(reference)) == 6
    for name, banks in names.items():
        assert banks == reference, name


def test_builtin_can_be_loaded_by_path_and_passes_scenarios_through(tmp_path: Path) -> None:
    path = write(tmp_path, builtin_text("steady"), "copy.toml")
    by_path = load_scenario(path)
    by_str = load_scenario(str(path))
    assert by_path == by_str == load_scenario("steady")
    sc = load_scenario("steady")
    assert load_scenario(sc) == sc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dt_s": 0.0}, "dt_s = 0.0 is out of range"),
        ({"end_s": -5.0}, "end_s = -5 must be greater than start_s"),
        ({"dt_s": 7.0}, "whole number of steps of dt_s = 7"),
        ({"max_attempts": 0}, "max_attempts = 0 is out of range"),
    ],
)
def test_a_scenario_object_gets_the_checks_a_file_gets(change: dict, message: str) -> None:
    # e.g. made with dataclasses.replace: before, these passed through to a ZeroDivisionError or a numpy error
    sc = dataclasses.replace(load_scenario("steady"), **change)
    with pytest.raises(ScenarioError, match=message) as exc:
        load_scenario(sc)
    assert "Scenario 'steady'" in str(exc.value)
    with pytest.raises(ScenarioError, match=message):
        PaymentRoutingEnv(sc)


def test_a_scenario_is_checked_once_where_it_enters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name is checked when it is loaded; the Scenario that comes back then passes through every later hop (an
    evaluation of three heuristics used to check the same scenario 16 times)."""
    from agents.evaluation import evaluate_policies
    from payroute_env import scenario as scenario_module

    checks = []
    original = scenario_module.scenario_from_dict

    def counting(data: dict, source: str = "<dict>") -> Scenario:
        checks.append(source)
        return original(data, source)

    monkeypatch.setattr(scenario_module, "scenario_from_dict", counting)
    sc = load_scenario("steady")
    assert load_scenario(sc) is sc and checks == ["steady.toml"]
    result = evaluate_policies("steady", ["admit_all", "sre_throttle", "success_rate_router"], episodes=1,
                               bound=False, progress=False, timeline=False)  # fmt: skip
    assert len(result.policies) == 3 and checks == ["steady.toml", "steady.toml"]
    replaced = dataclasses.replace(sc, max_attempts=2)  # not built by the loader: checked as it enters
    assert load_scenario(replaced) is not replaced and checks[-1] == "Scenario 'steady'"


def test_numpy_numbers_in_a_scenario_object_are_numbers() -> None:
    sc = dataclasses.replace(load_scenario("steady"), dt_s=np.float32(5.0), max_attempts=np.int64(3))
    checked = load_scenario(sc)
    assert checked == load_scenario("steady") and type(checked.dt_s) is float and type(checked.max_attempts) is int


def test_seed_story_banks_and_declared_vs_true_capacity() -> None:
    """DESIGN 1.6: fragile CCB and CMB carry less than declared; ICBC carries at least its declared figure."""
    sc = load_scenario("double11_2013")
    assert sc.bank_names == ("ICBC", "CCB", "CMB", "BOC", "CIB", "PSBC")
    by = {b.name: b for b in sc.banks}
    for fragile in ("CCB", "CMB"):
        b = by[fragile]
        assert b.quick_capacity < b.quick_declared and b.netbank_capacity < b.netbank_declared
    icbc = by["ICBC"]
    assert icbc.quick_capacity >= icbc.quick_declared and icbc.netbank_capacity >= icbc.netbank_declared


def test_top_level_fragility_gives_defaults_that_banks_override() -> None:
    data = builtin_dict("double11_2013")
    sc = load_scenario("double11_2013")
    default = data["fragility"]
    for raw, b in zip(data["banks"], sc.banks, strict=True):
        own = raw.get("fragility", {})
        for f in dataclasses.fields(b.fragility):
            expected = own.get(f.name, default[f.name])
            assert getattr(b.fragility, f.name) == pytest.approx(expected), (b.name, f.name)


def test_surge_curve_of_2013_jumps_at_midnight_peaks_in_minutes_5_to_10_and_decays() -> None:
    sc = load_scenario("double11_2013")
    surge = sc.traffic.surges[0]
    base = sc.traffic.base_rate
    assert sc.intent_rate(-60.0) == pytest.approx(base)
    # the jump happens within about a minute of midnight
    assert sc.intent_rate(surge.jump_s) >= base + surge.jump_fraction * surge.peak_rate - 1e-6
    assert surge.jump_s <= 90
    t = np.arange(-120.0, 3600.0, 1.0)
    rate = sc.intent_rate(t)
    peak_t = t[rate == rate.max()]
    assert 300 <= peak_t.min() and peak_t.max() <= 600
    assert rate.max() == pytest.approx(base + surge.peak_rate)
    # about 790k payments per minute at the peak
    assert 60 * rate.max() == pytest.approx(790_000, rel=0.03)
    # halves (the surge part) every half-life after the plateau
    after = surge.peak_until_s + surge.half_life_s
    assert sc.intent_rate(after) - base == pytest.approx(surge.peak_rate / 2)
    assert 600 <= surge.half_life_s <= 1800
    assert np.all(np.diff(rate[t >= surge.peak_until_s]) <= 1e-9)


def test_peak_intents_per_step_is_the_busiest_step() -> None:
    sc = load_scenario("double11_2013")
    expected = (sc.intent_rate(sc.step_midpoints()) * sc.dt_s).max()
    assert sc.peak_intents_per_step == pytest.approx(expected)


# ------------------------------------------------------------------------------------------ extends


def test_randomized_extends_double11_2013() -> None:
    base = load_scenario("double11_2013")
    rnd = load_scenario("randomized")
    assert rnd.name == "randomized"
    assert rnd.banks == base.banks
    assert rnd.traffic == base.traffic
    assert rnd.users == base.users
    assert rnd.switch == base.switch and rnd.balance == base.balance
    assert (rnd.dt_s, rnd.start_s, rnd.end_s, rnd.max_attempts) == (
        base.dt_s,
        base.start_s,
        base.end_s,
        base.max_attempts,
    )
    assert rnd.randomize.active and not base.randomize.active
    assert "extends" in builtin_dict("randomized")


def test_extends_relative_path_overrides_tables_key_by_key(tmp_path: Path) -> None:
    write(tmp_path, builtin_text("steady"), "parent.toml")
    child = write(
        tmp_path,
        'extends = "parent.toml"\nname = "child"\n[users]\nabandon = 0.5\n',
        "child.toml",
    )
    parent = load_scenario(tmp_path / "parent.toml")
    sc = load_scenario(child)
    assert sc.name == "child"
    assert sc.users.abandon == 0.5
    # the rest of the [users] table is kept from the parent
    assert sc.users.switch == parent.users.switch
    assert sc.users.retry_delay_s == parent.users.retry_delay_s
    assert sc.banks == parent.banks


def test_extends_a_builtin_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, 'extends = "double11_2013"\nname = "mine"\nmax_attempts = 2\n', "mine.toml")
    sc = load_scenario(path)
    assert sc.max_attempts == 2 and sc.name == "mine"
    assert sc.banks == load_scenario("double11_2013").banks


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, 'extends = "b.toml"\nname = "a"\n', "a.toml")
    write(tmp_path, 'extends = "a.toml"\nname = "b"\n', "b.toml")
    with pytest.raises(ScenarioError, match="cycle") as exc:
        load_scenario(tmp_path / "a.toml")
    assert "extends" in str(exc.value)
    assert "a.toml" in str(exc.value)


def test_extends_itself_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, 'extends = "self.toml"\nname = "s"\n', "self.toml")
    with pytest.raises(ScenarioError, match="cycle"):
        load_scenario(path)


def test_extends_must_be_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "extends = 3\n", "num.toml")
    with pytest.raises(ScenarioError, match="extends"):
        load_scenario(path)


def test_undecodable_file_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name = 1")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert str(path) in str(exc.value)


def test_extends_missing_parent(tmp_path: Path) -> None:
    path = write(tmp_path, 'extends = "nope.toml"\n', "orphan.toml")
    with pytest.raises(ScenarioError, match="orphan.toml: extends = 'nope.toml': unknown scenario"):
        load_scenario(path)


# ------------------------------------------------------------------------------------------ bad files


def test_error_is_a_value_error() -> None:
    assert issubclass(ScenarioError, ValueError)
    assert payroute_env.ScenarioError is ScenarioError


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, builtin_text("steady") + "\n[users\nabandon = = 3\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert str(path) in str(exc.value)
    assert "TOML" in str(exc.value)


def test_missing_field_is_named(tmp_path: Path) -> None:
    text = edit(builtin_text("double11_2013"), "netbank_capacity = 450.0", "")
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "missing" in msg and "banks[1].netbank_capacity" in msg and str(path) in msg


def test_missing_top_level_table_is_named(tmp_path: Path) -> None:
    data = scenario_dict()
    del data["users"]
    with pytest.raises(ScenarioError, match="users"):
        scenario_from_dict(data)


def test_unknown_field_is_named(tmp_path: Path) -> None:
    text = edit(builtin_text("double11_2013"), "[users]\n", "[users]\npatience_s = 90.0\n")
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "unknown" in msg and "users.patience_s" in msg and str(path) in msg


def test_unknown_top_level_field_is_named() -> None:
    data = scenario_dict()
    data["colour"] = "red"
    with pytest.raises(ScenarioError, match="colour"):
        scenario_from_dict(data)


def test_negative_capacity_is_named_with_value_and_range(tmp_path: Path) -> None:
    text = edit(builtin_text("double11_2013"), "quick_capacity = 1100.0", "quick_capacity = -5.0")
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "banks[1].quick_capacity" in msg and "-5" in msg and str(path) in msg
    assert "[0" in msg  # the allowed range


@pytest.mark.parametrize(
    ("table", "key"),
    [("switch", "capacity"), ("balance", "capacity")],
)
def test_negative_shared_capacity(table: str, key: str) -> None:
    data = scenario_dict()
    data[table] = {**data[table], key: -1.0}
    with pytest.raises(ScenarioError, match=rf"{table}\.{key}"):
        scenario_from_dict(data)


def test_shares_not_summing_to_one(tmp_path: Path) -> None:
    text = edit(builtin_text("double11_2013"), "share = 0.27", "share = 0.37")
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "share" in msg and "sum to 1" in msg and str(path) in msg
    assert "1.1" in msg  # the value found


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("users", "abandon"), 1.5),
        (("users", "switch"), -0.1),
        (("users", "switch_to_balance"), 2.0),
        (("balance", "success"), 1.01),
        (("balance", "share"), -0.5),
        (("switch", "success_factor"), 1.2),
        (("banks", 0, "quick_success"), 1.5),
        (("banks", 0, "netbank_success"), -0.2),
        (("banks", 0, "quick_share"), 1.1),
        (("banks", 0, "fragility", "goodput_loss"), 1.5),
    ],
)
def test_probability_outside_unit_interval(path: tuple, value: float) -> None:
    data = scenario_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    dotted = ".".join(str(k) for k in path).replace(".0.", "[0].")
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data, source="my.toml")
    msg = str(exc.value)
    assert dotted in msg and "my.toml" in msg
    assert "[0, 1]" in msg


def test_probability_outside_unit_interval_in_a_file(tmp_path: Path) -> None:
    text = edit(builtin_text("double11_2013"), "abandon = 0.22", "abandon = 1.22")
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "users.abandon" in msg and "1.22" in msg and str(path) in msg


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(dt_s=0.0), "dt_s"),
        (lambda d: d.update(dt_s=1000.0), "dt_s"),
        (lambda d: d.update(max_attempts=0), "max_attempts"),
        (lambda d: d.update(max_attempts=2.5), "max_attempts"),
        (lambda d: d.update(end_s=-1.0), "end_s"),
        (lambda d: d.update(start_s=0.0, end_s=100.0, dt_s=30.0), "whole number of steps"),
        (lambda d: d.update(start_s=0.0, end_s=1e12, dt_s=1.0), "at most 1,000,000 are allowed"),
        (lambda d: d["traffic"].update(base_rate=1e18), "traffic rates allow up to 6e+19 intents per episode"),
        (lambda d: d["traffic"].update(base_rate=1e12), "at most 1e+12 are allowed (the counters are 64-bit"),
        (lambda d: d["banks"][0].update(name="  "), "banks[].name must not be empty"),
        (lambda d: d.update(name=3), "name"),
        (lambda d: d.update(dt_s=True), "dt_s"),
        (lambda d: d.update(banks={"name": "A"}), "banks"),
        (lambda d: d.update(users=[1, 2]), "users"),
        (lambda d: d["traffic"].update(base_rate=-1.0), "traffic.base_rate"),
        (lambda d: d["traffic"].update(base_rate="lots"), "traffic.base_rate"),
        (lambda d: d["traffic"].update(base_rate=math.nan), "traffic.base_rate"),
        (lambda d: d["traffic"].update(base_rate=math.inf), "traffic.base_rate"),
        (lambda d: d["users"].update(abandon=0.7, switch=0.5), "users.abandon + users.switch"),
        (lambda d: d["users"].update(retry_delay_s=0.0), "users.retry_delay_s"),
        (lambda d: d["quick"].update(timeout_s=0.0), "quick.timeout_s"),
        (lambda d: d["banks"][0]["fragility"].update(warm_start=0.0), "banks[0].fragility.warm_start"),
        (lambda d: d["banks"][0]["fragility"].update(relax_s=math.inf), "banks[0].fragility.relax_s"),
        (
            lambda d: d["banks"][0]["fragility"].update(outage_min_s=100.0, outage_max_s=50.0),
            "banks[0].fragility.outage_max_s",
        ),
        (lambda d: d.update(banks=[]), "banks"),
        (lambda d: d.update(banks=[dict(d["banks"][0], share=0.5), dict(d["banks"][0], share=0.5)]), "name"),
        (lambda d: d.update(randomize={"peak": 0.95}), "randomize.peak"),
        (lambda d: d.update(randomize={"shuffle_fragility": 1.5}), "randomize.shuffle_fragility"),
        (lambda d: d.update(randomize={"quick_share": -0.1}), "randomize.quick_share"),
        (lambda d: d.update(randomize={"fragile_banks": ["NOPE"]}), "randomize.fragile_banks names 'NOPE', not a"),
        (lambda d: d.update(randomize={"fragile_banks": "ICBC"}), "randomize.fragile_banks must be a list of strings"),
        (lambda d: d.update(randomize={"fragile_banks": [3]}), "randomize.fragile_banks[0] = 3 must be a string"),
        (
            lambda d: (d["balance"].update(share=0.3), d.update(randomize={"balance_share_max": 0.2})),
            "randomize.balance_share_max",
        ),
    ],
)
def test_other_invalid_values_are_named(mutate, field: str) -> None:
    data = copy.deepcopy(scenario_dict())
    mutate(data)
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data)
    assert field in str(exc.value)


def test_surge_with_peak_before_jump_is_rejected() -> None:
    surge = {
        "start_s": 0.0,
        "peak_rate": 100.0,
        "jump_s": 60.0,
        "jump_fraction": 0.5,
        "peak_at_s": 30.0,
        "peak_until_s": 100.0,
        "half_life_s": 60.0,
    }
    data = scenario_dict(traffic={"base_rate": 10.0, "surges": [surge]})
    with pytest.raises(ScenarioError, match=r"traffic\.surges\[0\]"):
        scenario_from_dict(data)


def test_infinite_collapse_time_is_allowed() -> None:
    data = scenario_dict()
    assert data["banks"][0]["fragility"]["collapse_s"] == math.inf
    sc = scenario_from_dict(data)
    assert sc.banks[0].fragility.collapse_s == math.inf


def test_a_single_bank_scenario_is_valid() -> None:
    sc = scenario_from_dict(scenario_dict())
    assert sc.n_banks == 1 and sc.bank_names == ("A",)


@pytest.mark.parametrize("name", ["no_such_scenario", "double11_2099"])
def test_unknown_name(name: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(name)
    assert name in str(exc.value)


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioError) as exc:
        load_scenario(missing)
    assert str(missing) in str(exc.value)


def test_env_with_bad_scenario_path_raises(tmp_path: Path) -> None:
    import gymnasium as gym

    path = write(tmp_path, edit(builtin_text("steady"), "abandon = 0.22", "abandon = 7.0"))
    with pytest.raises(ScenarioError, match="users.abandon"):
        gym.make("payroute/PaymentRouting-v0", scenario=str(path))


# ------------------------------------------------------------------------------------------ extreme time scales
_DURATIONS = [
    "traffic.surges.0.jump_s", "traffic.surges.0.half_life_s", "users.retry_delay_s", "quick.timeout_s",
    "netbank.timeout_s", "switch.timeout_s", "balance.timeout_s", "switch.fragility.relax_s",
    "switch.fragility.warmup_s", "switch.fragility.collapse_s",
]  # fmt: skip
_DELAYS = [
    "traffic.surges.0.peak_at_s", "traffic.surges.0.peak_until_s", "quick.interaction_s", "netbank.interaction_s",
    "switch.interaction_s", "balance.interaction_s", "switch.fragility.outage_min_s", "switch.fragility.outage_max_s",
]  # fmt: skip


def _set(data: dict, path: str, value: float) -> dict:
    data = copy.deepcopy(data)
    *parents, key = path.split(".")
    table = data
    for part in parents:
        table = table[int(part)] if part.isdigit() else table[part]
    table[key] = value
    return data


@pytest.mark.parametrize("path", _DURATIONS + _DELAYS)
def test_every_time_scale_is_refused_beyond_what_the_kernel_computes_and_runs_within(path: str) -> None:
    """Subnormal, huge and infinite times gave NaN observations or histogram writes out of bounds: now each is
    refused naming its field, and every accepted extreme runs with finite observations and whole accounting."""
    from payroute_env.scenario import MAX_TIME_S, MIN_TIME_S
    from payroute_env.simulator import Simulator

    if path.startswith("traffic."):  # the surge curve's time scales may be a nanosecond (a step)
        MIN_TIME_S = 1e-9  # noqa: N806

    base = builtin_dict("double11_2013")
    base["end_s"] = base["start_s"] + 120 * base["dt_s"]  # through midnight's jump, into the surge
    key = path.split(".")[-1]
    refused = [-1.0] if key == "collapse_s" else [-1.0, 1e20, MAX_TIME_S * 1.01, math.inf]  # inf: never collapses
    if path in _DURATIONS:
        refused += [0.0, 1e-310, MIN_TIME_S / 2]
    for value in refused:
        with pytest.raises(ScenarioError, match=key):
            scenario_from_dict(_set(base, path, value), "extreme")
    for value in [0.0, 1e-310, MIN_TIME_S, 1.0, MAX_TIME_S, 1e20, math.inf]:
        if value in refused:
            continue
        try:
            sc = scenario_from_dict(_set(base, path, value), "extreme")
        except ScenarioError as err:  # a cross-field rule (e.g. peak_at_s <= peak_until_s): it names the field
            assert key in str(err)
            continue
        sim = Simulator(sc, num_envs=2)
        obs = sim.reset([0, 1])
        for _ in range(sc.n_steps):
            obs, reward, _, _ = sim.step(np.tile([1.0, 1.0, 0.0, 0.0], (2, sc.n_banks)))
            assert np.isfinite(obs).all() and np.isfinite(reward).all(), (path, value)
        st = sim.state
        assert (st.arrived == st.succeeded + st.lost + st.in_flight).all(), (path, value)
        assert np.array_equal(st.latency_hist.sum(1), st.succeeded), (path, value)  # nothing fell out of the histogram


def test_a_fragile_bank_named_twice_is_refused() -> None:
    data = {**builtin_dict("double11_2013"), "randomize": {"fragile_banks": ["CCB", "CMB", "CCB"]}}
    with pytest.raises(ScenarioError, match=r"randomize.fragile_banks must name each bank once"):
        scenario_from_dict(data)
