"""`faust -A streamapp topics` against the local Apache Kafka."""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.broker
FAUST = str(Path(sys.executable).with_name("faust"))


def topics(kafka: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMAPP_BROKER": kafka.url}
    return subprocess.run([FAUST, "-A", "streamapp", "topics", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_create_list_and_delete_a_topic(kafka: Any) -> None:
    name = f"demo-{uuid.uuid4().hex[:6]}"
    created = topics(kafka, "create", name, "--partitions", "3")
    assert created.returncode == 0, created.stderr
    listed = topics(kafka, "list")
    assert f"{name}\tpartitions=3\treplication=1" in listed.stdout
    again = topics(kafka, "create", name, "--partitions", "3")
    assert again.returncode != 0
    assert again.stderr.strip().splitlines()[-1] == f"error: topic {name!r} already exists"
    deleted = topics(kafka, "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert name not in topics(kafka, "list").stdout


def test_deleting_a_missing_topic_fails_with_one_line(kafka: Any) -> None:
    result = topics(kafka, "delete", f"missing-{uuid.uuid4().hex[:6]}")
    assert result.returncode == 1
    assert "does not exist" in result.stderr.strip().splitlines()[-1]


def test_a_compacted_topic_can_be_created(kafka: Any) -> None:
    name = f"compact-{uuid.uuid4().hex[:6]}"
    result = topics(kafka, "create", name, "--partitions", "1", "--cleanup-policy", "compact")
    assert result.returncode == 0, result.stderr
    assert topics(kafka, "delete", name).returncode == 0


def test_an_unreachable_broker_is_named_in_one_line() -> None:
    env = {**os.environ, "STREAMAPP_BROKER": "kafka://127.0.0.1:9"}
    result = subprocess.run([FAUST, "-A", "streamapp", "topics", "list"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "error: broker unreachable at 127.0.0.1:9" in result.stderr
