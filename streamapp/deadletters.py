"""The one dead-letter mechanism: whatever an agent cannot decode, validate or process goes to
`dead-letters` with everything needed to replay it, is counted, and the stream moves on."""

from __future__ import annotations

import base64
import logging
import math
import types
import typing
from collections import OrderedDict
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
    records lazily, so a wrong type would raise inside the agent instead of becoming a dead letter)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return []
    if isinstance(value, _Broken):
        return [f"{path}: {value.exc}"]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        options = [arg for arg in args if arg is not type(None)]
        found = [type_problems(value, option, path) for option in options]
        return [] if any(not problems for problems in found) else found[0]
    if isinstance(expected, type) and issubclass(expected, faust.Record):
        if isinstance(value, expected):
            fields = expected._options.fields
            return [problem for name, kind in fields.items()
                    for problem in type_problems(_field(value, name), kind, f"{path}.{name}")]
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
        return [problem for i, item in enumerate(value) for problem in type_problems(item, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path} must be an object"]
        return [problem for key, item in value.items()
                for problem in type_problems(item, args[1], f"{path}.{key}")]
    return []


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
