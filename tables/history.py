"""Per-asset history of recent feature vectors: one mechanism for the anomaly and RUL pipelines.

Each pipeline's agent consumes `extracted-features` (keyed by `asset_id`) and keeps its OWN instance,
because two agents reading the same partition run independently: a shared table would give one agent
a window the other has not yet extended. Both instances are changelog-backed Faust tables (recovered
on restart and rebalance) with the same value layout; only the name and the window length differ.

    history = FeatureHistory("anomaly-feature-history")           # last `history_window` vectors
    window = history.append_and_window(asset_id, features, event.message.partition, event.message.offset)
    ...                                                            # after the batch, before the ack:
    saved = await history.persist()                                # one changelog record per touched asset
    ...
    await saved                                                    # before the batch's acks

Update an instance only from the agent consuming the co-partitioned topic; anyone may `window()` it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from streamapp.app import app
from streamapp.settings import get_settings
from tables.changelog import DeferredChangelog


def _history_window() -> int:
    return get_settings().history_window


class FeatureHistory:
    """asset_id -> {"partition", "offset", "vectors": [{name: value}, ...], "offsets": [offset, ...]} (oldest
    first, at most `size`; `offsets` holds each vector's source offset)."""

    def __init__(self, name: str, size: Callable[[], int] = _history_window, help: str = "") -> None:
        self.name = name
        self._size = size
        self.table = app.Table(
            name, key_type=str, default=None,
            help=help or "asset_id -> the asset's most recent feature vectors, oldest first",
        )
        self._changelog = DeferredChangelog(name)  # the assets changed since the last persist()

    @property
    def size(self) -> int:
        return max(1, int(self._size()))

    def window(self, asset_id: str) -> list[dict[str, float]]:
        """The asset's recent vectors held by this worker, oldest first (empty when unknown here)."""
        entry = self.table.data.get(asset_id)
        return [dict(vector) for vector in entry["vectors"]] if entry else []

    def append_and_window(
        self, asset_id: str, features: dict[str, float], partition: int, offset: int | None = None
    ) -> list[dict[str, float]]:
        """Append `features` and return the asset's window, oldest first, ending with `features`.

        `partition` is the source partition (the changelog partition of the entry). With `offset`, a
        replayed message (offset not above the last one applied) is not appended twice, and its window is
        the one it had when first applied (each vector's offset is kept), so a redelivery after a crash
        gives the same answer."""
        entry = self.table.data.get(asset_id) or {"partition": partition, "offset": -1, "vectors": []}
        vectors: list[dict[str, float]] = list(entry["vectors"])
        offsets: list[int | None] = list(entry.get("offsets") or [None] * len(vectors))
        replayed = offset is not None and entry.get("partition") == partition and offset <= entry.get("offset", -1)
        if replayed and offset in offsets:
            end = offsets.index(offset) + 1
            return vectors[max(0, end - self.size):end]  # the stored vectors: callers read, never change them
        window = [*vectors, {name: float(value) for name, value in features.items()}][-self.size:]
        if not replayed:
            self.table.data[asset_id] = {
                "partition": partition, "offset": entry.get("offset", -1) if offset is None else offset,
                "vectors": window, "offsets": [*offsets, offset][-self.size:],
            }
            self._changelog.mark(self.table, asset_id, partition)
        return list(window)

    async def persist(self) -> Awaitable[int]:
        """Hand the changelog message of every asset changed since the last call (once each) to the
        producer; the returned awaitable gives how many once the broker has them (await it before the
        batch's acks)."""
        return await self._changelog.hand_over()

    def discard_pending(self) -> None:
        """Forget the assets touched since the last persist (after a rebalance took their partitions)."""
        self._changelog.discard()


anomaly_history = FeatureHistory(
    "anomaly-feature-history", help="asset_id -> recent feature vectors the anomaly LSTM windows are cut from"
)


def _rul_window() -> int:
    """The served RUL model's window (its networks read exactly that many cycles), else the setting."""
    from streamapp.rul_scoring import rul_window

    return rul_window()


rul_history = FeatureHistory(
    "rul-feature-history", _rul_window, help="asset_id -> recent feature vectors the RUL windows are cut from"
)
