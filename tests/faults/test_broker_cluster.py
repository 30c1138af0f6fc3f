"""A three-broker Apache Kafka cluster (replication factor 3, min.insync.replicas 2; producers and the
worker with acks=all, STREAMAPP_TOPIC_REPLICATION=3): one broker SIGKILLed mid-stream. Producing and
processing go on while it is down, no acknowledged record is lost, and it rejoins when restarted."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from streamapp.stack import KafkaCluster, MariaDBService, PostgresService
from tests.faults.conftest import ModelStore, Rig, record_figure
from tests.faults.workload import Sinks, Workload, produce_sync, unique_tag
from tests.services import private_dir, started

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
N = 240


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    with (
        private_dir("streamapp-fault-cluster-") as data_dir,
        started(KafkaCluster(data_dir, brokers=3), "a three-broker Apache Kafka cluster") as service,
    ):
        yield service


@pytest.fixture(scope="module")
def cluster_rig(
    cluster: KafkaCluster, postgres: PostgresService, mariadb: MariaDBService, model_store: ModelStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("fault-cluster-rig")
    name = f"cluster_{int(time.time())}"
    sinks = Sinks(postgres.create_database(name), mariadb.create_database(name), workdir / "lake", cluster.bootstrap)
    rig = Rig(cluster.url, cluster.bootstrap, sinks, workdir, {
        "MLFLOW_TRACKING_URI": model_store.uri(), "STREAMAPP_TOPIC_REPLICATION": "3", "STREAMAPP_PRODUCER_ACKS": "all",
    })
    rig.start_worker()
    yield rig
    rig.close()
    with contextlib.suppress(Exception):
        postgres.drop_database(name)
        mariadb.drop_database(name)


def test_one_broker_of_three_sigkilled_mid_stream_loses_nothing_and_processing_goes_on(
    cluster: KafkaCluster, cluster_rig: Rig,
) -> None:
    load = Workload.build(unique_tag("cluster"), N)
    before, during, after = load.slices(3)
    acked = produce_sync(cluster.bootstrap, before, pace_s=0.05)
    victim = cluster.brokers[1]
    victim.kill()
    killed = time.monotonic()
    acked += produce_sync(cluster.bootstrap, during)  # acks=all with 2 of 3 in sync: still accepted
    partial = Workload(load.tag, load.n)
    partial.messages = before + during
    for message in partial.messages:  # what must be processed while the broker is still down
        value = message.value
        if "message_id" in value:
            partial.measurement_ids.add(value["message_id"])
            if value["measurements"]["spo2_pct"] < 88:
                partial.alert_ids.add(value["message_id"] + ":CRITICAL_SPO2")
    cluster_rig.sinks.wait_complete(partial, 120, progress=lambda: cluster_rig.logs())
    assert not victim.running, "the broker came back on its own: the test proved nothing"
    record_figure("3-broker cluster, one SIGKILLed: kill to IoT sinks complete while it is down",
                  f"{time.monotonic() - killed:.1f} s")
    victim.start()
    acked += produce_sync(cluster.bootstrap, after)
    assert len(acked) == len(load.messages)
    cluster_rig.sinks.wait_complete(load, 120, progress=lambda: cluster_rig.logs())
    record_figure("3-broker cluster: duplicate records on output topics", str(cluster_rig.sinks.audit(load)))
    assert len(cluster_rig.running()) == 1
