"""The `simulate orders` runner: simulated shop orders to a JSON Lines file and/or the e-commerce topic."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from tqdm import tqdm

from streamapp.commands.base import CommandError
from streamapp.commands.produce_events import ensure_topic, event_key, produce_file, start_producer
from streamapp.simulators import SimulateOptions
from streamapp.simulators.orders import generate_orders, write_jsonl

DEFAULT_FILE_COUNT = 1000
LIVE_CUSTOMERS = 2000  # customer pool of an endless live stream


async def run_orders(options: SimulateOptions) -> int:
    """--out: write `count` orders (then --produce sends that file); --produce alone: a live stream at
    `rate` orders per second, endless unless --count is given."""
    if not options.out and not options.produce:
        raise CommandError("simulate orders needs --out PATH and/or --produce")
    from streamapp.topics import ecommerce_events_topic

    topic = options.topic or ecommerce_events_topic.get_topic_name()
    if options.out is not None:
        count = options.count or DEFAULT_FILE_COUNT
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(
            None, write_jsonl, options.out, generate_orders(count, seed=options.seed)
        )
        print(f"wrote {written} orders to {options.out}")
        if options.produce:
            report = await produce_file(options.out, topic, show_progress=True)
            print(f"sent {report.sent} events to {topic}")
        return 0
    sent = await stream_orders(topic, options)
    print(f"sent {sent} events to {topic}")
    return 0


async def stream_orders(topic: str, options: SimulateOptions) -> int:
    """Produce orders live (stamped with the time they are sent) at the given rate until the count or Ctrl+C."""
    await ensure_topic(topic)
    producer = await start_producer()
    total = options.count if options.count is not None else 10**12
    orders = generate_orders(total, seed=options.seed, start_time=datetime.now(UTC), n_customers=LIVE_CUSTOMERS)
    interval = 1.0 / options.rate if options.rate else 0.0
    bar = tqdm(total=options.count, unit="order", desc=f"-> {topic}", file=sys.stderr, dynamic_ncols=True)
    sent = 0
    pending = []
    try:
        for order in orders:
            order["event_time"] = datetime.now(UTC).isoformat(timespec="milliseconds")  # live: stamped now
            value = json.dumps(order, separators=(",", ":")).encode()
            pending.append(await producer.send(topic, value=value, key=event_key(order)))
            sent += 1
            bar.update(1)
            if interval:
                await asyncio.sleep(interval)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        bar.close()
        await producer.stop()
    return sent
