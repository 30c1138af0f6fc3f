"""`faust -A streamapp topics list | create NAME | delete NAME`: topic administration."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from faust.cli import argument, option

from streamapp.app import app
from streamapp.commands.base import CommandError, StreamappCommand
from streamapp.settings import get_settings


async def admin_client() -> AIOKafkaAdminClient:
    """An admin client connected to the configured brokers, or a CommandError saying why not."""
    settings = get_settings()
    client = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(client.start(), timeout=15)
    except (KafkaConnectionError, TimeoutError, OSError) as exc:
        await client.close()
        raise CommandError(f"broker unreachable at {','.join(settings.bootstrap_servers)}: {exc}") from exc
    return client


async def list_topics(client: AIOKafkaAdminClient) -> dict[str, dict[str, Any]]:
    names = [name for name in await client.list_topics() if not name.startswith("__")]
    described = await client.describe_topics(names) if names else []
    topics: dict[str, dict[str, Any]] = {}
    for topic in described:
        partitions = topic.get("partitions", [])
        replication = len(partitions[0].get("replicas", [])) if partitions else 0
        topics[topic["topic"]] = {"partitions": len(partitions), "replication": replication}
    return topics


async def create_topic(
    client: AIOKafkaAdminClient, name: str, partitions: int, replication: int, cleanup_policy: str | None
) -> None:
    configs = {"cleanup.policy": cleanup_policy} if cleanup_policy else {}
    if name in await client.list_topics():
        raise CommandError(f"topic {name!r} already exists")
    try:
        response = await client.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=replication, topic_configs=configs)]
        )
    except TopicAlreadyExistsError as exc:
        raise CommandError(f"topic {name!r} already exists") from exc
    except KafkaError as exc:
        raise CommandError(f"could not create topic {name!r}: {exc}") from exc
    _raise_topic_errors("create", name, getattr(response, "topic_errors", []))


def _raise_topic_errors(action: str, name: str, topic_errors: list[Any]) -> None:
    """aiokafka reports per-topic failures in the response instead of raising: surface them."""
    for entry in topic_errors:
        code = entry[1]
        if code == TopicAlreadyExistsError.errno:
            raise CommandError(f"topic {name!r} already exists")
        if code == UnknownTopicOrPartitionError.errno:
            raise CommandError(f"topic {name!r} does not exist")
        if code:
            message = entry[2] if len(entry) > 2 and entry[2] else f"error code {code}"
            raise CommandError(f"could not {action} topic {name!r}: {message}")


async def delete_topic(client: AIOKafkaAdminClient, name: str) -> None:
    if name not in await client.list_topics():
        raise CommandError(f"topic {name!r} does not exist")
    try:
        response = await client.delete_topics([name])
        _raise_topic_errors("delete", name, getattr(response, "topic_error_codes", []))
    except UnknownTopicOrPartitionError as exc:
        raise CommandError(f"topic {name!r} does not exist") from exc
    except KafkaError as exc:
        raise CommandError(f"could not delete topic {name!r}: {exc}") from exc


@app.command(
    argument("action", type=click.Choice(["list", "create", "delete"])),
    argument("name", required=False),
    option("--partitions", type=int, default=None, help="Partitions of a new topic (default: the app's)."),
    option("--replication", type=int, default=None, help="Replication factor of a new topic (default: the app's)."),
    option("--cleanup-policy", type=click.Choice(["delete", "compact", "compact,delete"]), default=None,
           help="cleanup.policy of a new topic."),
    base=StreamappCommand,
)
async def topics(
    self: StreamappCommand,
    action: str,
    name: str | None,
    partitions: int | None,
    replication: int | None,
    cleanup_policy: str | None,
) -> None:
    """List, create or delete Kafka topics on the configured brokers."""
    if action != "list" and not name:
        raise CommandError(f"topics {action} needs a topic name")
    settings = get_settings()
    client = await admin_client()
    try:
        if action == "list":
            for topic, info in sorted((await list_topics(client)).items()):
                print(f"{topic}\tpartitions={info['partitions']}\treplication={info['replication']}")
        elif action == "create":
            assert name is not None
            await create_topic(
                client, name, partitions or settings.topic_partitions,
                replication or settings.topic_replication, cleanup_policy,
            )
            print(f"created {name}")
        else:
            assert name is not None
            await delete_topic(client, name)
            print(f"deleted {name}")
    finally:
        await client.close()
