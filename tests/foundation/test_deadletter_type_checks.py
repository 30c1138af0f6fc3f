"""`type_problems`, the declared-type check every decoded message goes through before an agent sees it: its
messages, its compiled-once checkers, and that it answers exactly what the first (uncompiled) version did."""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import faust
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamapp import deadletters, records
from streamapp.deadletters import compile_checker, type_problems
from streamapp.records import (
    DeviceStatus,
    ExtractedFeatures,
    IotMeasurement,
    SensorReading,
    StreamRecord,
    VitalsWindow,
)

VITALS = {"freq_card": 72.0, "freq_resp": 16, "spo2_pct": 97.5, "temp_corp": 36.8}


def measurement(**changes: Any) -> IotMeasurement:
    """An IotMeasurement as the decoder builds it: `measurements` still a dict, built on first read."""
    data = {"patient_id": "p", "device_id": "d", "timestamp": "2026-11-23T10:00:00+00:00",
            "measurements": dict(VITALS), "ingestion_timestamp": "2026-11-23T10:00:01+00:00",
            "api_version": "v1", "message_id": "m-1", "quality_score": 0.9}
    return IotMeasurement.from_data({**data, **changes})


def reading(**changes: Any) -> SensorReading:
    return SensorReading.from_data({"asset_id": "a", "samples": [0.1, 0.2], "sampling_rate_hz": 100.0,
                                    **changes})


class Node(StreamRecord):
    """A record that contains itself: compiling its checker must terminate."""

    name: str
    children: list[Node] | None = None


# ---- the messages ------------------------------------------------------------------------------------
def test_a_valid_record_with_a_nested_record_has_no_problems() -> None:
    assert type_problems(measurement(), IotMeasurement) == []
    assert type_problems(measurement(quality_score=None), IotMeasurement) == []


def test_a_nested_record_of_the_wrong_type_is_one_problem_at_its_field() -> None:
    assert type_problems(measurement(measurements=[1, 2]), IotMeasurement) == [
        "value.measurements: streamapp.records.VitalSigns() argument after ** must be a mapping, not list"]
    assert type_problems(measurement(measurements={**VITALS, "freq_resp": "fast"}), IotMeasurement) == [
        "value.measurements.freq_resp must be a finite number"]


def test_a_value_that_is_not_the_record_must_be_an_object() -> None:
    assert type_problems("p", IotMeasurement) == ["value must be an object"]
    assert type_problems(measurement(), IotMeasurement, "body") == []
    assert type_problems(3, IotMeasurement, "body") == ["body must be an object"]


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_a_float_must_be_finite(number: float) -> None:
    assert type_problems(measurement(quality_score=number), IotMeasurement) == [
        "value.quality_score must be a finite number"]
    assert type_problems(measurement(measurements={**VITALS, "spo2_pct": number}), IotMeasurement) == [
        "value.measurements.spo2_pct must be a finite number"]


def test_an_integer_too_large_for_a_float_is_a_problem_not_a_crash() -> None:
    assert type_problems(10**400, float, "value.x") == ["value.x must be a finite number"]
    assert type_problems(-(10**400), float) == ["value must be a finite number"]
    assert type_problems(10**300, float) == []
    assert type_problems(10**400, int) == []


def test_a_bool_is_neither_an_integer_nor_a_number() -> None:
    status = DeviceStatus.from_data({"device_id": "d", "status": "online", "last_seen": "t",
                                     "missing_readings": True, "signal_quality": False})
    assert type_problems(status, DeviceStatus) == ["value.missing_readings must be an integer",
                                                   "value.signal_quality must be a finite number"]
    assert type_problems(True, int) == ["value must be an integer"]
    assert type_problems(3, int) == [] and type_problems(3, float) == []
    assert type_problems(1, bool) == ["value must be of type bool"]
    assert type_problems(b"x", str) == ["value must be of type str"]


def test_a_list_reports_each_bad_item_by_its_index() -> None:
    assert type_problems(reading(samples=[0.1, "x", 0.3, math.nan]), SensorReading) == [
        "value.samples[1] must be a finite number", "value.samples[3] must be a finite number"]
    assert type_problems(reading(samples={"0": 0.1}), SensorReading) == ["value.samples must be a list"]
    assert type_problems([[1.0], [1.0, None]], list[list[float]], "xs") == ["xs[1][1] must be a finite number"]


def test_a_dict_reports_each_bad_value_by_its_key() -> None:
    features = ExtractedFeatures.from_data({"asset_id": "a", "features": {"rms": 1.0, "peak": "high"}})
    assert type_problems(features, ExtractedFeatures) == ["value.features.peak must be a finite number"]
    window = VitalsWindow.from_data({"patient_id": "p", "window_start": "s", "window_end": "e", "count": 1,
                                     "stats": {"spo2_pct": {"min": 1.0, "max": [2]}, "hr": 3},
                                     "alert_count": 0, "alerts_by_type": {"low": 1.5}})
    assert type_problems(window, VitalsWindow) == [
        "value.stats.spo2_pct.max must be a finite number", "value.stats.hr must be an object",
        "value.alerts_by_type.low must be an integer"]
    assert type_problems({"a": object()}, dict[str, Any]) == []


def test_optional_allows_none_and_otherwise_reports_its_type() -> None:
    none_everywhere = reading(samples=None, sampling_rate_hz=None, values=None, cycle=None, metadata=None)
    assert type_problems(none_everywhere, SensorReading) == []
    assert deadletters._compiled(SensorReading).ok(none_everywhere)  # without the slow path
    assert type_problems(reading(samples="0.1", cycle=2.0), SensorReading) == [
        "value.samples must be a list", "value.cycle must be an integer"]
    assert type_problems(None, typing.Optional[int]) == []  # noqa: UP045 (typing.Union, not types.UnionType)
    assert type_problems(None, int) == ["value must be an integer"]


def test_a_union_answers_its_first_options_problems_whatever_was_cached_for_an_equal_union() -> None:
    assert (int | str) == (str | int)  # equal, and hash alike: the cache must not confuse them
    assert type_problems(1.5, int | str) == ["value must be an integer"]
    assert type_problems(1.5, str | int) == ["value must be of type str"]
    assert type_problems([1.5], list[int | str]) == ["value[0] must be an integer"]
    assert type_problems([1.5], list[str | int]) == ["value[0] must be of type str"]
    assert type_problems("x", int | str) == [] and type_problems(2, str | int) == []


def test_any_and_unknown_kinds_accept_anything() -> None:
    assert type_problems(object(), Any) == []
    assert type_problems(object(), tuple[int, int]) == []
    assert type_problems(object(), typing.Literal["a"]) == []


def test_a_record_that_contains_itself() -> None:
    tree = Node.from_data({"name": "root", "children": [{"name": "a", "children": [{"name": 3}]}]})
    assert type_problems(tree, Node) == ["value.children[0].children[0].name must be of type str"]
    assert type_problems(Node.from_data({"name": "root", "children": [{"name": "a"}]}), Node) == []


# ---- compiled once -----------------------------------------------------------------------------------
def test_the_compiled_checker_is_reused_and_answers_like_type_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fresh(StreamRecord):  # a type no other test compiled
        reading: SensorReading
        weights: dict[str, list[float]]

    built: list[Any] = []
    build = deadletters._build

    def counting_build(expected: Any, building: dict[Any, Any]) -> Any:
        built.append(expected)
        return build(expected, building)

    monkeypatch.setattr(deadletters, "_build", counting_build)
    good = Fresh.from_data({"reading": {"asset_id": "a"}, "weights": {"w": [1.0]}})
    bad = Fresh.from_data({"reading": {"asset_id": 1}, "weights": {"w": [1.0, "2"]}})

    assert type_problems(good, Fresh) == []
    assert Fresh in built
    first = len(built)
    assert type_problems(bad, Fresh, "msg") == ["msg.reading.asset_id must be of type str",
                                                "msg.weights.w[1] must be a finite number"]
    assert type_problems(good, Fresh) == []
    check = compile_checker(Fresh)
    assert compile_checker(Fresh) is check
    assert len(built) == first  # nothing compiled again
    assert check(bad, "msg") == type_problems(bad, Fresh, "msg") and check(good, "msg") == []


# ---- the same answers as the first version -----------------------------------------------------------
def reference_type_problems(value: Any, expected: Any, path: str = "value") -> list[str]:
    """The checker as first written (re-inspecting the annotations on every call): the specification."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return []
    if isinstance(value, deadletters._Broken):
        return [f"{path}: {value.exc}"]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        options = [arg for arg in args if arg is not type(None)]
        found = [reference_type_problems(value, option, path) for option in options]
        return [] if any(not problems for problems in found) else found[0]
    if isinstance(expected, type) and issubclass(expected, faust.Record):
        if isinstance(value, expected):
            fields = expected._options.fields
            return [problem for name, kind in fields.items()
                    for problem in reference_type_problems(deadletters._field(value, name), kind,
                                                           f"{path}.{name}")]
        return [f"{path} must be an object"]
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return [] if ok else [f"{path} must be a finite number"]
    if expected is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path} must be an integer"]
    if expected in (str, bool, bytes):
        return [] if isinstance(value, expected) else [f"{path} must be of type {expected.__name__}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path} must be a list"]
        return [problem for i, item in enumerate(value)
                for problem in reference_type_problems(item, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path} must be an object"]
        return [problem for key, item in value.items()
                for problem in reference_type_problems(item, args[1], f"{path}.{key}")]
    return []


RECORDS = [r for r in vars(records).values()
           if isinstance(r, type) and issubclass(r, StreamRecord) and not r.__is_abstract__] + [Node]
ANNOTATIONS = [Any, int, float, str, bool, bytes, int | None, typing.Optional[float],  # noqa: UP045
               int | str, str | int, float | list[int] | None, list[Any], list[float], list[list[int]],
               dict[str, Any], dict[str, float], dict[str, dict[str, int]], dict[str, float] | None,
               Any | None, tuple[int], IotMeasurement, list[IotMeasurement] | None]
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3), st.binary(max_size=2))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children, max_size=3)), max_leaves=8)


def data_for(kind: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly what `kind` declares, sometimes anything: records with some fields of a wrong type."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if depth > 3:
        return json_values
    if isinstance(kind, type) and issubclass(kind, faust.Record):
        fields = kind._options.fields
        well_typed = st.fixed_dictionaries({name: data_for(k, depth + 1) for name, k in fields.items()})
        return st.one_of(well_typed, well_typed, json_values)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(data_for(arg, depth + 1) for arg in args))
    if origin is list:
        return st.one_of(st.lists(data_for(args[0], depth + 1), max_size=3), json_values)
    if origin is dict:
        return st.one_of(st.dictionaries(st.text(max_size=3), data_for(args[1], depth + 1), max_size=3),
                         json_values)
    simple = {type(None): st.none(), float: st.floats(allow_nan=True, allow_infinity=True),
              int: st.integers(min_value=-(2**64), max_value=2**64), str: st.text(max_size=3),
              bool: st.booleans()}
    return st.one_of(simple.get(kind, json_values), json_values)


def outcome(check: Any, *args: Any) -> Any:
    try:
        return check(*args)
    except Exception as exc:  # a record faust could not even build raises the same way for both
        return type(exc)


SAME = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_decoded_records_get_the_same_problems_as_from_the_first_version(record: type) -> None:
    @SAME
    @given(data=data_for(record))
    def same(data: Any) -> None:
        try:
            value = record.from_data(data) if isinstance(data, dict) else data
        except (TypeError, ValueError):
            return  # not a record faust builds: refused before any type check
        expected = outcome(reference_type_problems, value, record)
        if isinstance(data, dict):  # the reference built the nested records: check a fresh copy too
            assert outcome(type_problems, record.from_data(data), record) == expected
        assert outcome(type_problems, value, record) == expected
        if isinstance(expected, list):  # the fast path says yes exactly when there is nothing to report
            assert deadletters._compiled(record).ok(value) is (expected == [])

    same()


@pytest.mark.parametrize("annotation", ANNOTATIONS, ids=str)
def test_plain_values_get_the_same_problems_as_from_the_first_version(annotation: Any) -> None:
    @SAME
    @given(value=st.one_of(data_for(annotation), json_values))
    def same(value: Any) -> None:
        expected = reference_type_problems(value, annotation, "v")
        assert type_problems(value, annotation, "v") == expected
        assert deadletters._compiled(annotation).ok(value) is (expected == [])
        broken = deadletters._Broken(ValueError("no"))
        expected = reference_type_problems(broken, annotation)
        assert type_problems(broken, annotation) == expected
        assert deadletters._compiled(annotation).ok(broken) is (expected == [])

    same()
