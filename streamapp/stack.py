"""The local stack: Apache Kafka (KRaft), PostgreSQL 15 and MariaDB 10.11 as private processes.

`python -m streamapp.stack up|down|status|env [--only kafka,postgres,mariadb] [--brokers 3]`; tests and
fault scenarios use the classes (`KafkaService`, `KafkaCluster`, `PostgresService`, `MariaDBService`).

Kafka version, verified here on 2026-11-23 with aiokafka 0.14.0 and faust-streaming 0.15.3:
4.4.0 (the newest release on Maven Central) passes: aiokafka produce (acks=all, idempotent), a
transactional produce, a consumer group that commits; a faust worker whose agent updates a Table
wrote its changelog, committed its group offsets and, restarted, recovered the table from the
changelog (counts continued). Kafka 4 dropped pre-2.1 protocol versions, but aiokafka 0.14 and faust
0.15.3 no longer use them. The same checks pass on 3.9.1 too (STREAMAPP_KAFKA_VERSION=3.9.1), and on a
3-broker cluster (replication 3, min.insync.replicas 2), where acks=all produce also kept working with
one broker SIGKILLed, and that broker restarted on its own ports and data.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamapp.settings import get_settings

KAFKA_VERSION = "4.4.0"
KAFKA_SCALA = "2.13"
KAFKA_HEAP = ["-Xmx1g", "-Xms1g"]  # the heap of Kafka's own start script: a smaller one kept G1 marking without pause
KAFKA_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADB_SERVER = Path("/usr/sbin/mariadbd")
SERVICES = ("kafka", "postgres", "mariadb")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
DB_USER = "streamapp"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class StackError(RuntimeError):
    """A prerequisite is missing or a service failed: the message is one line naming the cause."""


# ---- small utilities ---------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def cache_dir() -> Path:
    """The cache for downloads and the registry of running services; never inside the repo."""
    return get_settings().cache_path


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, avoid: Iterable[int] = ()) -> int:
    """`preferred` when free, else the next free port above it; any free port without a preference."""
    taken = set(avoid)
    if preferred is not None:
        for port in range(preferred, preferred + 200):
            if port not in taken and port_is_free(port):
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def _require_binary(name: str, why: str) -> str:
    found = shutil.which(name)
    if not found:
        raise StackError(f"`{name}` not found on PATH: it is needed {why}")
    return found


def _is_root() -> bool:
    return os.geteuid() == 0


def ensure_debian_package(needed: Path, package: str) -> None:
    """Install `package` with apt when `needed` is missing; only root can, others get one clear line."""
    if needed.exists():
        return
    if not _is_root():
        raise StackError(f"{needed} is missing: install it as root with `apt-get install -y {package}`")
    if not shutil.which("apt-get"):
        raise StackError(f"{needed} is missing and there is no apt-get to install {package}")
    with _cache_lock("apt"):
        if not needed.exists():
            _apt_install(needed, package)


def _apt_install(needed: Path, package: str) -> None:
    log = cache_dir() / f"apt-{package}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _say(f"installing Debian package {package} (log: {log})")
    with log.open("w") as out:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode != 0:
                raise StackError(f"`{' '.join(cmd)}` failed: see {log}")
    if not needed.exists():
        raise StackError(f"apt installed {package} but {needed} is still missing: see {log}")


@contextlib.contextmanager
def _cache_lock(name: str) -> Iterator[None]:
    """Serialise downloads and installs between processes sharing the cache (parallel test sessions)."""
    import fcntl

    path = cache_dir() / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_async(factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion in a private thread, so callers inside an event loop work too."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _log_tail(log: Path, lines: int = 5) -> str:
    try:
        tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in tail)


# ---- processes and the registry ----------------------------------------------------------------


def _pid_alive(pid: int, marker: str) -> bool:
    """True when `pid` runs and its command line holds `marker`: a recycled pid is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker.encode() in cmdline


def _signal_pid(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_pid(
    pid: int,
    marker: str,
    sig: int = signal.SIGTERM,
    timeout: float = STOP_TIMEOUT_S,
    popen: subprocess.Popen[bytes] | None = None,
) -> None:
    """Send `sig`, wait up to `timeout`, then SIGKILL the whole process group; returns when it is gone."""
    if not _pid_alive(pid, marker):
        if popen is not None:
            popen.poll()
        return
    _signal_pid(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            break
        if not _pid_alive(pid, marker):
            break
        time.sleep(0.1)
    else:
        if sig != signal.SIGKILL:
            _say(f"pid {pid} ignored signal {sig} for {timeout:.0f} s: SIGKILL")
    _signal_pid(pid, signal.SIGKILL, group=True)  # also reaps children left behind in the group
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _pid_alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)


def _registry() -> Path:
    path = cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _register(name: str, pid: int, marker: str, sig: int, owner: int | None) -> Path:
    entry = _registry() / f"{name}-{pid}.json"
    payload = {"name": name, "pid": pid, "marker": marker, "signal": int(sig), "owner": owner}
    if owner is not None:
        payload["owner_marker"] = _cmdline(owner)
    entry.write_text(json.dumps(payload))
    return entry


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def reap_orphans() -> list[str]:
    """Stop services whose owning process (a crashed test session) is gone; returns what was stopped."""
    stopped: list[str] = []
    for entry in sorted(_registry().glob("*.json")):
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            entry.unlink(missing_ok=True)
            continue
        alive = _pid_alive(info["pid"], info["marker"])
        owner = info.get("owner")
        if alive and owner is not None and not _pid_alive(owner, info.get("owner_marker", "")):
            stop_pid(info["pid"], info["marker"], info["signal"])
            stopped.append(f"{info['name']} (pid {info['pid']})")
            alive = False
        if not alive:
            entry.unlink(missing_ok=True)
    return stopped


_ATTACHED: list[ManagedServer] = []


def _stop_attached() -> None:
    for server in reversed(_ATTACHED):
        with contextlib.suppress(Exception):
            server.stop()


class ManagedServer:
    """One server process: launched detached from the terminal, logged in its data dir, pid recorded.

    `attached=True` (tests): the process is stopped when this Python process exits, and if that process
    crashes, the next `down` or the next attached start stops it. `attached=False` (`up`): it outlives us.
    """

    name = "server"
    stop_signal: int = signal.SIGTERM

    def __init__(self, data_dir: Path, *, attached: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.attached = attached
        self._popen: subprocess.Popen[bytes] | None = None
        self._entry: Path | None = None

    # subclasses fill these in
    @property
    def marker(self) -> str:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def prepare(self) -> None:
        """Install, download and initialise whatever the first launch needs (idempotent)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def launch_kwargs(self) -> dict[str, Any]:
        return {}

    def probe(self) -> bool:
        """True when the server answers a real request."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Create users and databases once the server answers."""

    # ---- lifecycle ----
    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    @property
    def pid(self) -> int | None:
        if self._popen is not None and self._popen.poll() is None:
            return self._popen.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid, self.marker) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def launch(self) -> None:
        """Start the process without waiting for it to answer."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.attached:
            reap_orphans()
        with self.log_path.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                **self.launch_kwargs(),
            )
        self.pid_file.write_text(str(self._popen.pid))
        owner = os.getpid() if self.attached else None
        self._entry = _register(self.name, self._popen.pid, self.marker, self.stop_signal, owner)
        if self.attached and self not in _ATTACHED:
            if not _ATTACHED:
                import atexit

                atexit.register(_stop_attached)
            _ATTACHED.append(self)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll `probe` until it answers; a dead process or a timeout raises with the log's tail."""
        started = time.monotonic()
        next_note = started + 5
        while True:
            if self.probe():
                return
            if self._popen is not None and self._popen.poll() is not None:
                raise StackError(
                    f"{self.name} exited with code {self._popen.returncode} while starting: see {self.log_path}"
                    f" ({_log_tail(self.log_path, 3)})"
                )
            now = time.monotonic()
            if now - started > timeout:
                raise StackError(f"{self.name} did not answer within {timeout:.0f} s: see {self.log_path}")
            if now >= next_note:
                _say(f"waiting for {self.name} ({now - started:.0f} s)")
                next_note = now + 5
            time.sleep(0.25)

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Prepare, launch and wait until the server answers; prints its URL."""
        if not self.running:
            self.prepare()
            self.launch()
        self.wait_ready(timeout)
        self.after_ready()
        _say(f"{self.name} ready: {self.url}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Graceful stop (then SIGKILL after `timeout`)."""
        pid = self.pid
        if pid is not None:
            stop_pid(pid, self.marker, self.stop_signal, timeout, self._popen)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server and its process group, as a crash would."""
        pid = self.pid
        if pid is not None:
            stop_pid(pid, self.marker, signal.SIGKILL, 0, self._popen)
        self._forget()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Stop (if running) and start again on the same ports and data."""
        self.stop()
        self.start(timeout)

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        if self._entry is not None:
            self._entry.unlink(missing_ok=True)
        self._popen = None
        if self in _ATTACHED:
            _ATTACHED.remove(self)

    def _load_config(self, defaults: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Ports and secrets chosen at first start, kept in the data dir so restarts reuse them."""
        path = self.data_dir / "stack-service.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        config = defaults()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return config


# ---- Apache Kafka ------------------------------------------------------------------------------


def kafka_version() -> str:
    return get_settings().kafka_version or KAFKA_VERSION


def _kafka_pom(version: str) -> str:
    """A pom whose runtime dependencies are a Kafka broker plus a logging binding."""
    if int(version.split(".")[0]) >= 4:  # Kafka 4 logs through log4j2, still on the slf4j 1.7 API
        binding = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5")
    else:  # Kafka 3 logs through reload4j
        binding = ("org.slf4j", "slf4j-reload4j", "1.7.36")
    deps = [("org.apache.kafka", f"kafka_{KAFKA_SCALA}", version), binding]
    dep_xml = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>streamapp.stack</groupId><artifactId>kafka-runtime</artifactId><version>{version}</version>"
        f"<packaging>pom</packaging><dependencies>{dep_xml}</dependencies></project>\n"
    )


def ensure_kafka_jars(version: str | None = None) -> Path:
    """The directory of Kafka's runtime jars, fetched once from Maven Central with `mvn`."""
    version = version or kafka_version()
    home = cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    if not (home / ".complete").exists():
        with _cache_lock(f"kafka-{version}"):
            if not (home / ".complete").exists():
                _fetch_kafka_jars(version, home)
    return libs


def _fetch_kafka_jars(version: str, home: Path) -> None:
    libs = home / "libs"
    _require_binary("java", "to run Apache Kafka (apt-get install -y default-jre-headless)")
    mvn = _require_binary("mvn", "to fetch Apache Kafka's jars (apt-get install -y maven)")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_kafka_pom(version))
    log = home / "mvn.log"
    _say(f"fetching Apache Kafka {version} jars with mvn into {libs} (log: {log})")
    started = time.monotonic()
    shutil.rmtree(libs, ignore_errors=True)
    cmd = [
        mvn, "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={libs}",
    ]  # fmt: skip
    with log.open("w") as out:
        if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=home).returncode != 0:
            raise StackError(f"mvn could not fetch Apache Kafka {version}: see {log}")
    if not any(libs.glob(f"kafka_{KAFKA_SCALA}-{version}*.jar")):
        raise StackError(f"mvn ran but no kafka_{KAFKA_SCALA}-{version} jar is in {libs}: see {log}")
    _kafka_logging(home, version)
    (home / ".complete").write_text(f"{time.monotonic() - started:.1f}\n")
    _say(f"Apache Kafka {version} jars fetched in {time.monotonic() - started:.1f} s")


def _kafka_logging(home: Path, version: str) -> tuple[Path, str]:
    """A logging config writing INFO to stdout (the broker's log file) and the JVM flag selecting it."""
    if int(version.split(".")[0]) >= 4:
        path = home / "log4j2.properties"
        _write_atomically(
            path,
            "status = warn\n"
            "appender.out.type = Console\nappender.out.name = out\n"
            "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.out.ref = out\n"
            "logger.state.name = state.change.logger\nlogger.state.level = warn\n"
            "logger.request.name = kafka.request.logger\nlogger.request.level = warn\n",
        )
        return path, f"-Dlog4j2.configurationFile={path}"
    path = home / "log4j.properties"
    _write_atomically(
        path,
        "log4j.rootLogger=INFO, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.state.change.logger=WARN\nlog4j.logger.kafka.request.logger=WARN\n",
    )
    return path, f"-Dlog4j.configuration=file:{path}"


def _kafka_class_sharing(home: Path, dump: bool) -> list[str]:
    """JVM flags for class-data sharing: the first broker to exit cleanly dumps Kafka's loaded classes
    into an archive, and every later Kafka JVM maps it and starts about 2 s sooner."""
    archive = home / "kafka.jsa"
    partials = list(home.glob("kafka.jsa.part-*"))
    if partials:
        writing = _cmdlines_mentioning("kafka.jsa.part-")
        for partial in partials:
            if any(str(partial) in cmdline for cmdline in writing):
                continue  # its JVM still runs: it writes the archive when it exits
            if not archive.exists() and _archive_maps(partial, home / "libs"):
                os.replace(partial, archive)
            else:
                partial.unlink(missing_ok=True)
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    if dump:
        return [f"-XX:ArchiveClassesAtExit={home}/kafka.jsa.part-{uuid.uuid4().hex[:8]}"]
    return []


def _archive_maps(archive: Path, libs: Path) -> bool:
    """True when the JVM can map `archive` (`-Xshare:on` refuses a truncated or mismatched one)."""
    java = shutil.which("java") or "java"
    cmd = [java, f"-XX:SharedArchiveFile={archive}", "-Xshare:on", "-cp", f"{libs}/*", "-version"]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def _cmdlines_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if text in cmdline:
                found.append(cmdline)
    return found


async def _kafka_broker_ids(bootstrap: str, request_timeout_s: float) -> set[int]:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout_s * 1000))
    try:
        async with asyncio.timeout(request_timeout_s * 2):
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
        return {broker.nodeId for broker in metadata.brokers()}
    finally:
        await client.close()


def kafka_broker_ids(bootstrap: str, timeout: float = 3.0) -> set[int]:
    """Node ids listed by a real metadata request to `bootstrap`; empty when it does not answer."""
    first = bootstrap.split(",")[0].rsplit(":", 1)
    try:  # a closed port is answered at once, without aiokafka logging a connection error
        socket.create_connection((first[0], int(first[1])), timeout=timeout).close()
    except OSError:
        return set()
    try:
        return set(_run_async(lambda: _kafka_broker_ids(bootstrap, timeout)))
    except Exception:
        return set()


@dataclass(frozen=True)
class KafkaQuorum:
    """What every broker of one KRaft cluster shares."""

    cluster_id: str
    version: str
    voters: str  # node_id@127.0.0.1:controller_port of every node, comma-separated
    replication: int  # replication factor of the topics (internal ones included)


class KafkaBroker(ManagedServer):
    """One Kafka JVM in KRaft combined mode (broker and controller in the same process)."""

    name = "kafka"

    def __init__(
        self, data_dir: Path, quorum: KafkaQuorum, *, node_id: int, port: int, controller_port: int,
        attached: bool = True,
    ) -> None:
        super().__init__(data_dir, attached=attached)
        self.name = f"kafka-{node_id}"
        self.quorum = quorum
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.expected_brokers: set[int] = {node_id}

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def marker(self) -> str:
        return str(self.config_path)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def server_properties(self) -> str:
        min_isr = 2 if self.quorum.replication >= 3 else 1
        lines = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": self.quorum.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.data_dir / "logs",
            "num.partitions": 1,
            "default.replication.factor": self.quorum.replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": self.quorum.replication,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": self.quorum.replication,
            "transaction.state.log.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
            "num.network.threads": 2,
            "num.io.threads": 4,
            "log.retention.hours": 24,
            # the active controller appends a no-op record to the metadata log this often (Kafka: 500 ms);
            # at 500 ms an idle single broker spent ~0.1 core on them, taken from the workers on this machine
            "metadata.max.idle.interval.ms": 5000,
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def prepare(self) -> None:
        libs = ensure_kafka_jars(self.quorum.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.server_properties())
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        java = _require_binary("java", "to run Apache Kafka (apt-get install -y default-jre-headless)")
        _, log_flag = _kafka_logging(libs.parent, self.quorum.version)
        sharing = _kafka_class_sharing(libs.parent, dump=False)
        cmd = [java, *sharing, "-cp", f"{libs}/*", log_flag, "kafka.tools.StorageTool", "format",
               "-t", self.quorum.cluster_id, "-c", str(self.config_path)]  # fmt: skip
        with self.log_path.open("ab") as log:
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise StackError(f"Kafka StorageTool could not format {self.data_dir}: see {self.log_path}")

    def command(self) -> list[str]:
        java = _require_binary("java", "to run Apache Kafka (apt-get install -y default-jre-headless)")
        libs = ensure_kafka_jars(self.quorum.version)
        _, log_flag = _kafka_logging(libs.parent, self.quorum.version)
        sharing = _kafka_class_sharing(libs.parent, dump=True)
        return [java, *KAFKA_HEAP, *KAFKA_JVM_FLAGS, *sharing, log_flag, f"-Dkafka.logs.dir={self.data_dir}",
                "-cp", f"{libs}/*", "kafka.Kafka", str(self.config_path)]  # fmt: skip

    def probe(self) -> bool:
        return self.expected_brokers <= kafka_broker_ids(self.bootstrap)


def _kafka_cluster_id() -> str:
    """A random base64url id; never one starting with `-`, which the storage tool would read as an option
    (Kafka's own `Uuid.randomUuid` skips those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaCluster:
    """`brokers` combined broker+controller JVMs forming one KRaft quorum; 3 brokers replicate 3 ways."""

    def __init__(
        self,
        data_dir: Path,
        brokers: int = 3,
        *,
        port: int | None = None,
        version: str | None = None,
        attached: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / "cluster.json"
        if config_path.exists():
            config = json.loads(config_path.read_text())
        else:
            used: list[int] = []
            nodes = []
            for _ in range(brokers):
                broker_port = free_port(port + len(used) if port else None, used)
                used.append(broker_port)
                controller_port = free_port(port + 1000 + len(used) if port else None, used)
                used.append(controller_port)
                nodes.append({"port": broker_port, "controller_port": controller_port})
            config = {
                "cluster_id": _kafka_cluster_id(),
                "version": version or kafka_version(),
                "nodes": nodes,
            }
            config_path.write_text(json.dumps(config, indent=2))
        nodes = config["nodes"]
        quorum = KafkaQuorum(
            cluster_id=config["cluster_id"],
            version=config["version"],
            voters=",".join(f"{i + 1}@127.0.0.1:{node['controller_port']}" for i, node in enumerate(nodes)),
            replication=min(3, len(nodes)),
        )
        self.version = quorum.version
        self.brokers = [
            KafkaBroker(
                self.data_dir / f"broker-{i + 1}", quorum, node_id=i + 1, port=node["port"],
                controller_port=node["controller_port"], attached=attached,
            )
            for i, node in enumerate(nodes)
        ]
        every_id = {broker.node_id for broker in self.brokers}
        for broker in self.brokers:
            broker.expected_brokers = every_id

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.bootstrap for broker in self.brokers)

    @property
    def url(self) -> str:
        return "kafka://" + ";".join(broker.bootstrap for broker in self.brokers)

    @property
    def pids(self) -> list[int | None]:
        return [broker.pid for broker in self.brokers]

    @property
    def running(self) -> bool:
        return all(broker.running for broker in self.brokers)

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Launch every broker first (the quorum needs a majority), then wait until all answer."""
        for broker in self.brokers:
            if not broker.running:
                broker.prepare()
                broker.launch()
        for broker in self.brokers:
            broker.wait_ready(timeout)
        _say(f"kafka ready: {self.url}")

    def probe(self) -> bool:
        return all(broker.probe() for broker in self.brokers)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every broker at once: stopped one by one, the last ones would wait for a lost quorum."""
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            list(pool.map(lambda broker: broker.stop(timeout), self.brokers))

    def kill(self) -> None:
        for broker in self.brokers:
            broker.kill()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        self.stop()
        self.start(timeout)


class KafkaService(KafkaCluster):
    """A single Kafka broker (replication factor 1): what the app and most tests need."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        version: str | None = None,
        attached: bool = True,
    ) -> None:
        super().__init__(data_dir, brokers=1, port=port, version=version, attached=attached)

    @property
    def broker(self) -> KafkaBroker:
        return self.brokers[0]

    @property
    def pid(self) -> int | None:
        return self.broker.pid

    @property
    def port(self) -> int:
        return self.broker.port


# ---- PostgreSQL --------------------------------------------------------------------------------


def _postgres_account() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise StackError("the `postgres` system user is missing: apt-get install -y postgresql") from exc
    return entry.pw_uid, entry.pw_gid


def _db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}: use [a-z_][a-z0-9_]*")
    return name


class DatabaseServer(ManagedServer):
    """A private database server on its own port with a generated password, both kept in its data dir."""

    url_scheme = ""  # SQLAlchemy dialect+driver of the app's URLs
    database = ""  # the database created on first start
    datadir_name = ""  # the server's own files, in this folder of data_dir (beside its log and config)

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        attached: bool = True,
    ) -> None:
        super().__init__(data_dir, attached=attached)
        self.durable = durable
        config = self._load_config(lambda: {"port": port or free_port(), "password": secrets.token_hex(12)})
        self.port: int = config["port"]
        self.password: str = config["password"]

    @property
    def datadir(self) -> Path:
        return self.data_dir / self.datadir_name

    def url_for(self, database: str) -> str:
        return f"{self.url_scheme}://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def create_database(self, name: str) -> str:
        """A new empty database the app user owns; returns its URL."""
        raise NotImplementedError

    def drop_database(self, name: str) -> None:
        raise NotImplementedError


class PostgresService(DatabaseServer):
    """A private PostgreSQL 15 on 127.0.0.1; root runs it as the `postgres` user (initdb refuses root)."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to leave
    url_scheme = "postgresql+asyncpg"
    database = "streamapp"
    datadir_name = "pgdata"

    @property
    def marker(self) -> str:
        return str(self.datadir)

    def _as_owner(self) -> dict[str, Any]:
        if not _is_root():
            return {}
        uid, gid = _postgres_account()
        return {"user": uid, "group": gid, "extra_groups": [], "cwd": str(self.data_dir)}

    def prepare(self) -> None:
        ensure_debian_package(PG_BIN / "initdb", "postgresql")
        if (self.datadir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            uid, gid = _postgres_account()
            for parent in [self.data_dir, *self.data_dir.parents]:
                if not os.stat(parent).st_mode & 0o001:
                    raise StackError(
                        f"the postgres user cannot enter {parent}: chmod o+x it or choose another dir"
                    )
            self.datadir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.datadir, uid, gid)
        cmd = [str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--no-locale", "-E", "UTF8",
               "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]  # fmt: skip
        with self.log_path.open("ab") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, **self._as_owner())
        if done.returncode != 0:
            raise StackError(f"initdb failed for {self.datadir}: see {self.log_path}")

    def command(self) -> list[str]:
        cmd = [str(PG_BIN / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.datadir}",
               "-c", "max_connections=100", "-c", "shared_buffers=64MB"]  # fmt: skip
        if not self.durable:  # tests only: an OS crash may lose data; a killed server still keeps commits
            cmd += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        return cmd

    def launch_kwargs(self) -> dict[str, Any]:
        return self._as_owner()

    def probe(self) -> bool:
        cmd = [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"]
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the private unix socket; raises with psql's message."""
        cmd = [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.datadir),
               "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def after_ready(self) -> None:
        if self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'") != "1":
            self.psql(f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{self.password}'")
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'") != "1":
            self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """A new empty database owned by the app user; returns its URL."""
        self.psql(f"CREATE DATABASE {_db_name(name)} OWNER {DB_USER}")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_db_name(name)} WITH (FORCE)")


# ---- MariaDB -----------------------------------------------------------------------------------


class MariaDBService(DatabaseServer):
    """A private MariaDB 10.11 on 127.0.0.1 with its own datadir, socket and pid file (grant tables on)."""

    name = "mariadb"
    url_scheme = "mysql+aiomysql"
    database = "orders"
    datadir_name = "data"

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "mysqld.sock"

    @property
    def marker(self) -> str:
        return f"--datadir={self.datadir}"

    @staticmethod
    def _run_as() -> list[str]:
        return ["--user=root"] if _is_root() else []

    def prepare(self) -> None:
        ensure_debian_package(MARIADB_SERVER, "mariadb-server")
        if len(str(self.socket_path)) > 100:
            raise StackError(f"socket path too long for a unix socket: {self.socket_path}")
        if (self.datadir / "mysql").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if not install:
            raise StackError("mariadb-install-db not found: apt-get install -y mariadb-server")
        cmd = [install, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
               "--skip-test-db", "--skip-name-resolve", *self._run_as()]  # fmt: skip
        with self.log_path.open("ab") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        if done.returncode != 0:
            raise StackError(f"mariadb-install-db failed for {self.datadir}: see {self.log_path}")

    def command(self) -> list[str]:
        cmd = [str(MARIADB_SERVER), "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket_path}",
               f"--pid-file={self.data_dir / 'mariadbd.pid'}", f"--port={self.port}", "--bind-address=127.0.0.1",
               "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
               "--innodb-use-native-aio=0", "--max-connections=200", *self._run_as()]  # fmt: skip
        if not self.durable:
            cmd += [
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-doublewrite=0",
            ]  # kill-safe, not OS-crash-safe
        return cmd

    def probe(self) -> bool:
        admin = shutil.which("mariadb-admin") or shutil.which("mysqladmin") or "mariadb-admin"
        cmd = [
            admin,
            "--no-defaults",
            f"--socket={self.socket_path}",
            "-uroot",
            "--connect-timeout=2",
            "ping",
        ]
        try:
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0 and self.socket_path.exists() and not port_is_free(self.port)

    def sql(self, statement: str) -> str:
        """Run SQL as root over the private socket; raises with the client's message."""
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        cmd = [client, "--no-defaults", f"--socket={self.socket_path}", "-uroot", "-N", "-B", "-e", statement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"mariadb client failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def after_ready(self) -> None:
        self.sql(f"CREATE USER IF NOT EXISTS '{DB_USER}'@'%' IDENTIFIED BY '{self.password}'")
        if not self.sql(f"SHOW DATABASES LIKE '{self.database}'"):
            self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """A new empty database the app user owns; returns its URL."""
        name = _db_name(name)
        self.sql(f"CREATE DATABASE `{name}`; GRANT ALL PRIVILEGES ON `{name}`.* TO '{DB_USER}'@'%'")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{_db_name(name)}`")


# ---- the `up` / `down` / `status` commands -----------------------------------------------------


def state_dir() -> Path:
    return get_settings().var_dir / "stack"


def _state_file(service: str) -> Path:
    return state_dir() / f"{service}.json"


def _write_state(service: str, url: str, data_dir: Path, servers: list[ManagedServer]) -> None:
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "service": service,
        "url": url,
        "data_dir": str(data_dir),
        "processes": [
            {
                "name": s.name,
                "pid": s.pid,
                "marker": s.marker,
                "signal": int(s.stop_signal),
                "log": str(s.log_path),
                "pid_file": str(s.pid_file),
            }
            for s in servers
        ],
    }
    _state_file(service).write_text(json.dumps(state, indent=2))
    (folder / f"{service}.url").write_text(url + "\n")


def _read_state(service: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(_state_file(service).read_text()))
    except (OSError, ValueError):
        return None


def _state_alive(state: dict[str, Any]) -> bool:
    return all(_pid_alive(p["pid"], p["marker"]) for p in state["processes"] if p["pid"])


def _kafka_for_up(brokers: int) -> KafkaCluster:
    folder = state_dir() / ("kafka" if brokers == 1 else f"kafka-{brokers}brokers")
    if brokers == 1:
        return KafkaService(folder, port=None if (folder / "cluster.json").exists() else 9092, attached=False)
    return KafkaCluster(
        folder, brokers, port=None if (folder / "cluster.json").exists() else 9092, attached=False
    )


def _service_for_up(service: str, brokers: int, durable: bool) -> tuple[Any, list[ManagedServer]]:
    if service == "kafka":
        cluster = _kafka_for_up(brokers)
        return cluster, list(cluster.brokers)
    folder = state_dir() / service
    exists = (folder / "stack-service.json").exists()
    if service == "postgres":
        pg = PostgresService(
            folder, port=None if exists else free_port(5432), durable=durable, attached=False
        )
        return pg, [pg]
    maria = MariaDBService(folder, port=None if exists else free_port(3306), durable=durable, attached=False)
    return maria, [maria]


def _check_ports_free(servers: list[ManagedServer]) -> None:
    for server in servers:
        if server.running:
            continue
        ports = [getattr(server, "port", None), getattr(server, "controller_port", None)]
        for port in ports:
            if port is not None and not port_is_free(port):
                raise StackError(
                    f"port {port} needed by {server.name} is busy (see `ss -ltnp`); free it first"
                )


def cmd_up(services: list[str], brokers: int = 1, durable: bool = True) -> None:
    for service in services:
        state = _read_state(service)
        if state and _state_alive(state):
            _say(f"{service} already running: {state['url']}")
            continue
        started = time.monotonic()
        handle, servers = _service_for_up(service, brokers, durable)
        _check_ports_free(servers)
        try:
            handle.start()
        except BaseException:
            handle.stop(timeout=5)  # never leave a half-started process that no state file points at
            raise
        _write_state(service, handle.url, handle.data_dir, servers)
        _say(f"{service} up in {time.monotonic() - started:.1f} s (logs: {handle.data_dir})")


def cmd_down(services: list[str]) -> None:
    for service in services:
        state = _read_state(service)
        if state is None:
            continue
        alive = [p for p in state["processes"] if p["pid"] and _pid_alive(p["pid"], p["marker"])]
        for proc in alive:
            _say(f"stopping {proc['name']} (pid {proc['pid']})")
        if alive:  # all at once: brokers stopped one by one would wait for a lost quorum
            with ThreadPoolExecutor(len(alive)) as pool:
                list(pool.map(lambda p: stop_pid(p["pid"], p["marker"], p["signal"]), alive))
        for proc in state["processes"]:
            Path(proc["pid_file"]).unlink(missing_ok=True)
        _state_file(service).unlink(missing_ok=True)
        (state_dir() / f"{service}.url").unlink(missing_ok=True)
        _say(f"{service} down")
    for orphan in reap_orphans():
        _say(f"stopped {orphan} left by a crashed test session")


def _answers(service: str, state: dict[str, Any]) -> bool:
    url: str = state["url"]
    if service == "kafka":
        bootstrap = url.split("://", 1)[1].replace(";", ",")
        return bool(kafka_broker_ids(bootstrap))
    host_port = url.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


def cmd_status(services: list[str]) -> int:
    """Print each service's state; returns 0 when every selected one that was started answers."""
    failing = 0
    for service in services:
        state = _read_state(service)
        if state is None:
            print(f"{service:9} stopped")
            continue
        alive = _state_alive(state)
        answers = alive and _answers(service, state)
        pids = ",".join(str(p["pid"]) for p in state["processes"])
        word = "up" if answers else ("running, not answering" if alive else "dead")
        print(f"{service:9} {word:24} {state['url']}  pid {pids}  data {state['data_dir']}")
        failing += 0 if answers else 1
    return 1 if failing else 0


def cmd_env() -> None:
    """Print `export` lines pointing the app at what `up` started."""
    names = {"kafka": "STREAMAPP_BROKER", "postgres": "STREAMAPP_DATABASE_URL",
             "mariadb": "STREAMAPP_ORDERS_DATABASE_URL"}  # fmt: skip
    for service, variable in names.items():
        state = _read_state(service)
        if state and _state_alive(state):
            print(f"export {variable}='{state['url']}'")


def _parse_only(raw: str) -> list[str]:
    chosen = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}: choose among {', '.join(SERVICES)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamapp.stack", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--only", default="", help="comma-separated services (default: kafka for up, all else)"
    )
    parser.add_argument("--brokers", type=int, default=1, choices=[1, 3], help="Kafka brokers for up")
    parser.add_argument("--no-fsync", action="store_true", help="databases skip fsync (tests only)")
    args = parser.parse_args(argv)
    try:
        if args.only:
            services = _parse_only(args.only)
        else:
            services = ["kafka"] if args.action == "up" else list(SERVICES)
        if args.action == "up":
            cmd_up(services, args.brokers, durable=not args.no_fsync)
        elif args.action == "down":
            cmd_down(services)
        elif args.action == "status":
            return cmd_status(services)
        else:
            cmd_env()
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
