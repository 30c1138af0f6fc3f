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

    def on_init_dependencies(self) -> Any:
        """Leave out the agents and tasks of pipelines this worker does not run (`STREAMAPP_PIPELINES`)."""
        from streamapp.pipelines import leave_out_disabled

        dropped = leave_out_disabled(self, get_settings().pipelines)
        if dropped:
            self.log.info("pipelines not run by this worker, left out: %s", ", ".join(dropped))
        return super().on_init_dependencies()

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
