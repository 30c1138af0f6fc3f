"""The trivial Faust agent of the bench (count events) as its own worker process.

`--mode defaults`: Faust's default settings, `async for value in stream`.
`--mode config`: the app's Faust configuration (`streamapp.faust_config`), still one event per iteration.
`--mode app`: the app's configuration and its micro-batching idiom (`micro_batches` + `ack_events`).
Every 1,000 events the agent notes (seconds, count, process CPU seconds); at `--count` it writes them to `--out`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faust

STEP = 1000


def build_app(mode: str, app_id: str, broker: str, datadir: Path) -> faust.App:
    if mode == "defaults":  # Faust's defaults, but its data directory in the bench's workdir, not the cwd
        return faust.App(
            app_id, broker=broker, store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest",
            datadir=str(datadir),
        )
    from streamapp.faust_config import faust_options
    from streamapp.settings import get_settings

    options: dict[str, Any] = {
        **faust_options(get_settings()), "broker": broker, "web_enabled": False, "datadir": str(datadir),
    }
    from streamapp.app import StreamApp

    return StreamApp(app_id, **options)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["defaults", "config", "app"], required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from streamapp.records import IotMeasurement

    app = build_app(args.mode, args.app_id, args.broker, args.out.with_suffix(".data"))
    topic = app.topic(args.topic, key_type=str, value_type=IotMeasurement)
    samples: list[tuple[float, int, float]] = []

    def note(count: int) -> None:
        samples.append((time.perf_counter(), count, time.process_time()))
        if count >= args.count:
            args.out.write_text(json.dumps({"samples": samples, "count": count}))

    if args.mode == "app":
        from streamapp.batching import ack_events, micro_batches

        @app.agent(topic)
        async def count_batches(stream: Any) -> None:
            seen = 0
            async for events in micro_batches(stream, agent="bench"):
                before, seen = seen, seen + len(events)
                await ack_events(stream, events)
                if seen // STEP != before // STEP or seen >= args.count:
                    note(seen)
    else:

        @app.agent(topic)
        async def count_events(stream: Any) -> None:
            seen = 0
            async for _value in stream:
                seen += 1
                if seen % STEP == 0 or seen >= args.count:
                    note(seen)

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
