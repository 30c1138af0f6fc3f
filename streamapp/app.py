"""The one Faust application. Agents, views and commands are found by autodiscovery."""

from __future__ import annotations

from typing import Any

import faust

from streamapp.faust_config import LazyFaustOptions
from streamapp.settings import get_settings

DISCOVERED_PACKAGES = ["agents", "tables", "streamapp.views", "streamapp.commands", "streamapp.lifecycle", "dashboards"]


class StreamApp(faust.App):
    """A Faust app whose id (the consumer group and topic prefix) also comes from the settings."""

    def _load_settings(self, *, silent: bool = False) -> Any:
        _, defaults = self._default_options
        self._default_options = (get_settings().app_id, defaults)
        return super()._load_settings(silent=silent)

    def _new_transport(self) -> Any:
        """Kafka through `BatchDrainingTransport` (fewer tasks per message); other schemes as Faust has them."""
        url = self.conf.broker_consumer[0]
        if url.scheme not in ("kafka", "aiokafka") or not get_settings().batch_draining_consumer:
            return super()._new_transport()
        from streamapp.fast_transport import BatchDrainingTransport

        return BatchDrainingTransport(self.conf.broker_consumer, self)


app = StreamApp(
    "streamapp",
    autodiscover=DISCOVERED_PACKAGES,
    origin="streamapp",
)
app.config_from_object(LazyFaustOptions())
