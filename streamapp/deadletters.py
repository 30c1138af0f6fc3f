"""The one dead-letter mechanism: whatever an agent cannot decode, validate or process goes to
`dead-letters` with everything needed to replay it, is counted, and the stream moves on."""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import faust
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
    pending = await dead_letters_topic.send(key=key or None, value=letter)
    if wait:
        await pending


class DeadLetteringTopic(faust.Topic):
    """A topic that turns undecodable messages into dead letters instead of crashing its agents.

    Faust calls the hook once per agent subscribed to the topic; one dead letter is sent per message."""

    _recently_dead: OrderedDict[tuple[str, int, int], None] = OrderedDict()

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
            await send_dead_letter(message, error=f"{type(exc).__name__}: {exc}", reason=DECODE, agent=agent_name)
        except Exception:  # the broker is failing too: say it loudly, never crash the conductor
            log.exception("could not publish dead letter for %s[%s]@%s", message.topic, message.partition, message.offset)
