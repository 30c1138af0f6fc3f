"""The one dead-letter mechanism: whatever an agent cannot decode, validate or process goes to
`dead-letters` with everything needed to replay it, is counted, and the stream moves on."""

from __future__ import annotations

import base64
import functools
import logging
import math
import sys
import threading
import types
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.exceptions import ValueDecodeError
from faust.types import EventT, Message

from streamapp import metrics

log = logging.getLogger(__name__)

DECODE = "decode"
INVALID = "invalid"
LATE = "late"
MODEL_NOT_TRAINED = "model-not-trained"
MISSING_FEATURES = "missing-features"
PROCESSING = "processing-error"
OBSERVER_PREFIX = "dashboard-"  # agents that only watch a topic are not named as its consumer


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _b64(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, bytes | bytearray):
        raw = repr(raw).encode()
    return base64.b64encode(bytes(raw)).decode("ascii")


def build_dead_letter(message: Message, *, error: str, reason: str, agent: str) -> Any:
    from streamapp.records import DeadLetter

    return DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        raw_value_b64=_b64(message.value),
        raw_key_b64=_b64(message.key),
        error=error[:2000],
        agent=agent,
        time=utc_now_iso(),
        reason=reason,
    )


async def send_dead_letter(
    message: Message | EventT, *, error: str, reason: str, agent: str, wait: bool = True
) -> None:
    """Publish one dead letter for `message` (a Faust Message or Event); count it and log it once."""
    from streamapp.topics import dead_letters_topic

    raw_message: Message = message.message if hasattr(message, "message") else message  # type: ignore[assignment]
    letter = build_dead_letter(raw_message, error=error, reason=reason, agent=agent)
    metrics.dead_letters_total.labels(agent, reason).inc()
    log.warning(
        "dead letter from %s: topic=%s partition=%s offset=%s reason=%s error=%s",
        agent, raw_message.topic, raw_message.partition, raw_message.offset, reason, error[:300],
    )
    key = raw_message.key if isinstance(raw_message.key, bytes) else _b64(raw_message.key).encode()

    async def publish() -> None:
        pending = await dead_letters_topic.send(key=key or None, value=letter)
        if wait:
            await pending

    from streamapp.sinks import write_with_retry

    await write_with_retry("kafka:dead-letters", publish)  # an expired batch is sent again, never dropped


def type_problems(value: Any, expected: Any, path: str = "value") -> list[str]:
    """Where a decoded value does not have its declared JSON type (Faust does not check, and builds nested
    records lazily, so a wrong type would raise inside the agent instead of becoming a dead letter).

    Called for every decoded message: the checks for `expected` are compiled once (`compile_checker`)."""
    compiled = _compiled(expected)
    return [] if compiled.ok(value) else compiled.report(value, path)


def compile_checker(expected: Any) -> Callable[[Any, str], list[str]]:
    """`check(value, path)`, the same answer as `type_problems(value, expected, path)`; one per type."""
    return _compiled(expected).check


# How the checks are compiled. For each type, two closures that agree on every value:
# - `ok(value) -> bool`, the per-message path: isinstance tests, no path strings, no lists;
# - `report(value, path) -> list[str]`, the messages, only called once `ok` has said no (or to check it).
# Reading a record's field may build a nested record now, which may raise: `_Broken`. `ok` reads each field
# once; `report` reads them again (Faust keeps a nested record it built, and raises again for a broken one).

_Ok = Callable[[Any], bool]
_Report = Callable[[Any, str], list[str]]


class _Compiled:
    __slots__ = ("ok", "report", "check")

    def __init__(self, ok: _Ok, report: _Report) -> None:
        self.ok = ok
        self.report = report

        def check(value: Any, path: str = "value") -> list[str]:
            return [] if ok(value) else report(value, path)

        self.check = check


_CACHE: dict[Any, _Compiled] = {}
_COMPILING = threading.RLock()


def _compiled(expected: Any) -> _Compiled:
    key = _key(expected)
    try:
        return _CACHE[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: compile it for this call only
        return _build(expected, {})
    with _COMPILING:  # a record is published once all its fields are compiled, even if it refers to itself
        found = _CACHE.get(key)
        if found is None:
            building: dict[Any, _Compiled] = {}
            found = _build(expected, building)
            _CACHE.update(building)
        return found


def _key(expected: Any) -> Any:
    """What the cache knows a type by. Not the type itself: `int | str == str | int`, but a value that is
    neither is reported against the first option, so the order of a union's options matters."""
    if isinstance(expected, type):
        return expected
    args = typing.get_args(expected)
    if not args:
        return expected
    return typing.get_origin(expected), tuple(_key(arg) for arg in args)


def _build(expected: Any, building: dict[Any, _Compiled]) -> _Compiled:
    """Compile `expected`, reusing what is cached or being compiled (`building`, keyed like the cache)."""
    key = _key(expected)
    try:
        found = _CACHE.get(key) or building.get(key)
    except TypeError:
        key, found = None, None
    if found is not None:
        return found
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        compiled = _ANY
    elif origin in (typing.Union, types.UnionType):
        compiled = _build_union(args, building)
    elif isinstance(expected, type) and issubclass(expected, faust.Record):
        return _build_record(expected, key, building)  # registers itself before compiling its fields
    elif expected is float:
        compiled = _FLOAT
    elif expected is int:
        compiled = _INT
    elif expected in (str, bool, bytes):
        compiled = _instance_of(expected)
    elif origin is list:
        compiled = _build_list(_build(args[0], building) if args else _NO_ARGUMENT)
    elif origin is dict:
        compiled = _build_dict(_build(args[1], building) if len(args) > 1 else _NO_ARGUMENT)
    else:
        compiled = _UNKNOWN
    if key is not None:
        building[key] = compiled
    return compiled


def _broken(value: Any, path: str) -> list[str]:
    return [f"{path}: {value.exc}"]


def _always(value: Any) -> bool:
    return True


def _nothing(value: Any, path: str) -> list[str]:
    return []


_ANY = _Compiled(_always, _nothing)


def _not_broken(value: Any) -> bool:
    return not isinstance(value, _Broken)


def _unknown_report(value: Any, path: str) -> list[str]:
    return _broken(value, path) if isinstance(value, _Broken) else []


_UNKNOWN = _Compiled(_not_broken, _unknown_report)  # a kind JSON has no check for: only a broken field fails


def _finite_number(value: Any) -> bool:
    if value.__class__ is float:
        return math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):  # a JSON integer of hundreds of digits is no float (isfinite would raise)
        return -sys.float_info.max <= value <= sys.float_info.max
    return math.isfinite(value)


def _scalar(check: Callable[[Any], bool], message: str) -> _Compiled:
    """A checker of one JSON scalar kind: `check` on the fast path, `path + message` when it fails."""

    def report(value: Any, path: str) -> list[str]:
        if isinstance(value, _Broken):
            return _broken(value, path)
        return [] if check(value) else [path + message]

    return _Compiled(check, report)


def _integer(value: Any) -> bool:
    return value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool))


_FLOAT = _scalar(_finite_number, " must be a finite number")
_INT = _scalar(_integer, " must be an integer")


def _instance_of(kind: type) -> _Compiled:
    return _scalar(functools.partial(type.__instancecheck__, kind), f" must be of type {kind.__name__}")


def _missing_argument(*_: Any) -> Any:
    raise IndexError("tuple index out of range")  # what a bare `List`/`Dict` annotation always did here


_NO_ARGUMENT = _Compiled(_missing_argument, _missing_argument)


def _build_union(args: tuple[Any, ...], building: dict[Any, _Compiled]) -> _Compiled:
    none_allowed = type(None) in args
    options = [_build(arg, building) for arg in args if arg is not type(None)]
    oks = tuple(option.ok for option in options)
    reports = tuple(option.report for option in options)
    accepts_broken = _always in oks  # `Any | ...`: a broken field is still a problem

    def report(value: Any, path: str) -> list[str]:
        if isinstance(value, _Broken):
            return _broken(value, path)
        if value is None and none_allowed:
            return []
        found = [option_report(value, path) for option_report in reports]
        return [] if any(not problems for problems in found) else found[0]

    def ok(value: Any) -> bool:
        if accepts_broken and isinstance(value, _Broken):
            return False
        if value is None and none_allowed:
            return True
        for option_ok in oks:
            if option_ok(value):
                return True
        return False

    if len(oks) == 1 and not accepts_broken:  # `X | None`, the usual union
        (only,) = oks

        def optional_ok(value: Any) -> bool:
            return value is None or only(value)

        return _Compiled(optional_ok if none_allowed else only, report)
    return _Compiled(ok, report)


def _build_record(record: type, key: Any, building: dict[Any, _Compiled]) -> _Compiled:
    fields: tuple[tuple[str, _Ok, _Report], ...] = ()  # set below, once the fields can find this record

    def ok(value: Any) -> bool:
        if not isinstance(value, record):
            return False
        for name, field_ok, _ in fields:
            try:
                item = getattr(value, name)  # builds a nested record now
            except (TypeError, ValueError) as exc:
                item = _Broken(exc)
            if not field_ok(item):
                return False
        return True

    def report(value: Any, path: str) -> list[str]:
        if isinstance(value, _Broken):
            return _broken(value, path)
        if not isinstance(value, record):
            return [f"{path} must be an object"]
        return [problem for name, _, field_report in fields
                for problem in field_report(_field(value, name), f"{path}.{name}")]

    compiled = _Compiled(ok, report)
    if key is not None:
        building[key] = compiled
    built = ((name, _build(kind, building)) for name, kind in record._options.fields.items())  # type: ignore[attr-defined]
    fields = tuple((name, field.ok, field.report) for name, field in built)
    return compiled


def _build_container(
    item: _Compiled, container: type, message: str, values: Callable[[Any], Iterable[Any]],
    members: Callable[[Any], Iterable[tuple[Any, Any]]], member_path: Callable[[str, Any], str],
) -> _Compiled:
    """A list or dict checker: the container's own type, then each value against `item`."""
    item_ok, item_report = item.ok, item.report

    if item is _ANY:
        def ok(value: Any) -> bool:
            return isinstance(value, container)
    else:
        def ok(value: Any) -> bool:
            return isinstance(value, container) and all(map(item_ok, values(value)))

    def report(value: Any, path: str) -> list[str]:
        if isinstance(value, _Broken):
            return _broken(value, path)
        if not isinstance(value, container):
            return [path + message]
        return [problem for key, element in members(value) for problem in item_report(element, member_path(path, key))]

    return _Compiled(ok, report)


def _build_list(item: _Compiled) -> _Compiled:
    return _build_container(item, list, " must be a list", iter, enumerate, lambda path, index: f"{path}[{index}]")


def _build_dict(item: _Compiled) -> _Compiled:
    return _build_container(item, dict, " must be an object", dict.values, dict.items, lambda path, key: f"{path}.{key}")


def _field(record: Any, name: str) -> Any:
    try:
        return getattr(record, name)  # builds a nested record now
    except (TypeError, ValueError) as exc:
        return _Broken(exc)


class _Broken:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class DeadLetteringTopic(faust.Topic):
    """A topic that turns undecodable messages into dead letters instead of crashing its agents.

    A message whose JSON does not have the record's declared types (a string for a number, a list for
    an object...) is undecodable too. Faust calls the hook once per agent subscribed to the topic; one
    dead letter is sent per message."""

    _recently_dead: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    def _compile_decode(self) -> None:
        super()._compile_decode()
        decode = self.decode

        async def checked(message: Message, *, propagate: bool = False) -> EventT:
            event = await decode(message, propagate=propagate)
            value_type = self.value_type
            if isinstance(value_type, type) and issubclass(value_type, faust.Record):
                problems = type_problems(event.value, value_type)
                if problems:
                    error = ValueDecodeError("; ".join(problems[:20]))
                    if propagate:
                        raise error
                    await self.on_value_decode_error(error, message)
            return event

        self.decode = checked  # type: ignore[method-assign]

    async def on_key_decode_error(self, exc: Exception, message: Message) -> None:
        await self._dead_letter_decode_error(exc, message)

    async def on_value_decode_error(self, exc: Exception, message: Message) -> None:
        await self._dead_letter_decode_error(exc, message)

    async def _dead_letter_decode_error(self, exc: Exception, message: Message) -> None:
        position = (message.topic, message.partition, message.offset)
        if position in self._recently_dead:
            return
        self._recently_dead[position] = None
        while len(self._recently_dead) > 4096:
            self._recently_dead.popitem(last=False)
        agents = [
            agent.name
            for agent in self.app.agents.values()
            if message.topic in getattr(agent.channel, "topics", ()) and not agent.name.startswith(OBSERVER_PREFIX)
        ]
        agent_name = ",".join(agents) or "decoder"
        try:
            # the conductor acked the message already: waiting for each delivery would only throttle the stream
            await send_dead_letter(message, error=f"{type(exc).__name__}: {exc}", reason=DECODE, agent=agent_name,
                                   wait=False)
        except Exception:  # the broker is failing too: say it loudly, never crash the conductor
            log.exception("could not publish dead letter for %s[%s]@%s", message.topic, message.partition, message.offset)
