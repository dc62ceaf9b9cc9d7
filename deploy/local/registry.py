"""Run a real schema registry, Apicurio Registry, from Maven Central, on 127.0.0.1.

    python -m deploy.local.registry start  [--name dev] [--port 8085]
    python -m deploy.local.registry stop   [--name dev]
    python -m deploy.local.registry status [--name dev]
    python -m deploy.local.registry fetch

The distribution (`io.apicurio:apicurio-registry-app:<version>:tar.gz:all`) is resolved
once by `mvn` into `.cache/m2` and unpacked into `.cache/apicurio/<version>/`; later starts
reuse it. The registry runs on Java 17 with its default storage, an in-memory database: a
restart forgets every schema and id (fine for development and tests; a deployment gives it
a persistent store). Its Confluent-compatible API is `http://127.0.0.1:<port>/apis/ccompat/v7`,
the URL to put in STREAMWALLET_SCHEMA_REGISTRY_URL. The PID file and the log live in
`.run/registry/<name>/`. Like deploy/local/kafka.py, this module imports nothing of the
project above deploy/.

3.0.9 is the newest 3.x that Maven Central serves and that runs on Java 17: 3.3.x needs
Java 21 (class file version 65).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from deploy.local.kafka import CACHE_DIR, PROJECT_ROOT, _pid_alive, _port_free

APICURIO_VERSION = "3.0.9"
APICURIO_ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
RUN_DIR = PROJECT_ROOT / ".run" / "registry"
CONFLUENT_API_PATH = "/apis/ccompat/v7"
REGISTRY_PORT_DEFAULT = 8085  # Apicurio's own default, 8080, is the gateway's

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
READY_PROBE_TIMEOUT_S = 2.0
HEAP_MB = 512


@dataclasses.dataclass(frozen=True)
class Registry:
    name: str
    port: int

    @property
    def root(self) -> Path:
        return RUN_DIR / self.name

    @property
    def pid_file(self) -> Path:
        return self.root / "registry.pid"

    @property
    def port_file(self) -> Path:
        return self.root / "registry.port"

    @property
    def log_file(self) -> Path:
        return self.root / "registry.log"

    @property
    def url(self) -> str:
        """The Confluent-compatible API: what Confluent's clients and STREAMWALLET_SCHEMA_REGISTRY_URL take."""
        return f"http://127.0.0.1:{self.port}{CONFLUENT_API_PATH}"


def _archive_path(version: str) -> Path:
    return (
        CACHE_DIR
        / "m2"
        / "io"
        / "apicurio"
        / "apicurio-registry-app"
        / version
        / (f"apicurio-registry-app-{version}-all.tar.gz")
    )


def registry_dir(version: str = APICURIO_VERSION) -> Path:
    """Fetch and unpack the distribution once; later calls return the cached folder."""
    folder = CACHE_DIR / "apicurio" / version
    marker = folder / ".complete"
    if marker.exists():
        return folder
    archive = _archive_path(version)
    if not archive.exists():
        if shutil.which("mvn") is None:
            raise RuntimeError("mvn is not installed: it is needed once to fetch Apicurio Registry")
        print(f"fetching Apicurio Registry {version} from Maven Central ...", file=sys.stderr)
        fetched = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-Dstyle.color=never",
                f"-Dmaven.repo.local={CACHE_DIR / 'm2'}",
                "dependency:get",
                "-Dtransitive=false",
                f"-Dartifact={APICURIO_ARTIFACT.format(version=version)}",
            ],
            check=False,
            capture_output=True,  # Maven's output (and its colour codes) only if it fails
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if fetched.returncode != 0 or not archive.exists():
            raise RuntimeError(f"mvn could not fetch Apicurio Registry {version}:\n{fetched.stdout[-3000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tarfile.open(archive) as bundle:
        bundle.extractall(folder, filter="data")
    marker.write_text(version)
    return folder


def runner_jar(folder: Path) -> Path:
    """3.0.x ships a runner jar with its lib/ beside it, 3.1 and later quarkus-run.jar."""
    candidates = [folder / "quarkus-run.jar", *sorted(folder.glob("*-runner.jar"))]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RuntimeError(f"no quarkus-run.jar or *-runner.jar in {folder}")


def java_command(jar: Path, port: int) -> list[str]:
    return [
        os.environ.get("JAVA", "java"),
        "-Xms128m",
        f"-Xmx{HEAP_MB}m",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={port}",
        # Later versions open a management interface on 0.0.0.0:9000; this one must not.
        "-Dquarkus.management.enabled=false",
        "-Dquarkus.log.console.color=false",
        "-jar",
        str(jar),
    ]


def _number_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _read_pid(registry: Registry) -> int | None:
    """The registry's process id, if that process is alive."""
    pid = _number_in(registry.pid_file)
    return pid if pid is not None and _pid_alive(pid) else None


def _recorded_port(name: str) -> int | None:
    return _number_in(RUN_DIR / name / "registry.port")


def start(*, name: str = "dev", port: int = REGISTRY_PORT_DEFAULT, version: str = APICURIO_VERSION) -> Registry:
    """Start (or reuse) a registry and wait until its Confluent-compatible API answers."""
    running_port = _recorded_port(name)
    if running_port is not None and _read_pid(Registry(name=name, port=running_port)) is not None:
        registry = Registry(name=name, port=running_port)
        if running_port != port:
            raise RuntimeError(f"registry {name!r} is already running on port {running_port}, not {port}")
        wait_ready(registry)
        return registry
    registry = Registry(name=name, port=port)
    if not _port_free(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is in use (by a server or a client socket); choose another")
    jar = runner_jar(registry_dir(version))
    registry.root.mkdir(parents=True, exist_ok=True)
    with open(registry.log_file, "ab") as log:
        process = subprocess.Popen(
            java_command(jar, port),
            cwd=jar.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that started it; stopped by PID
        )
    registry.pid_file.write_text(str(process.pid))
    registry.port_file.write_text(str(port))
    wait_ready(registry)
    return registry


def answers(api_url: str) -> bool:
    """Whether a Confluent-compatible registry API (a STREAMWALLET_SCHEMA_REGISTRY_URL) answers."""
    return _answers(f"{api_url.rstrip('/')}/subjects")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=READY_PROBE_TIMEOUT_S) as response:
            return response.status == 200 and isinstance(json.loads(response.read()), list)
    except (OSError, ValueError):
        return False


def wait_ready(registry: Registry, timeout_s: float = START_TIMEOUT_S) -> None:
    """Ready means: the Confluent-compatible API lists its subjects."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _read_pid(registry) is None:
            tail = registry.log_file.read_text(errors="replace")[-3000:] if registry.log_file.exists() else ""
            raise RuntimeError(f"the schema registry exited during start-up:\n{tail}")
        if _answers(f"{registry.url}/subjects"):
            return
        time.sleep(0.25)
    raise TimeoutError(f"the schema registry at {registry.url} is not ready after {timeout_s}s")


def stop(*, name: str = "dev") -> None:
    """Stop a registry by PID (SIGTERM, then SIGKILL after a grace period)."""
    registry = Registry(name=name, port=_recorded_port(name) or 0)
    pid = _read_pid(registry)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    registry.pid_file.unlink(missing_ok=True)
    registry.port_file.unlink(missing_ok=True)


def status(*, name: str = "dev") -> str:
    port = _recorded_port(name)
    if port is None:
        return f"registry {name}: not running"
    registry = Registry(name=name, port=port)
    pid = _read_pid(registry)
    if pid is None:
        return f"registry {name}: not running (stale files in {registry.root})"
    state = "ready" if _answers(f"{registry.url}/subjects") else "not answering"
    return f"registry {name}: pid {pid}, {state}, {registry.url}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "fetch"])
    parser.add_argument("--name", default="dev", help="its PID file and log live in .run/registry/<name>")
    parser.add_argument("--port", type=int, default=REGISTRY_PORT_DEFAULT)
    parser.add_argument("--version", default=APICURIO_VERSION)
    args = parser.parse_args(argv)
    if args.action == "fetch":
        print(registry_dir(args.version))
    elif args.action == "start":
        started_at = time.monotonic()
        registry = start(name=args.name, port=args.port, version=args.version)
        print(f"Apicurio Registry {args.version} ready at {registry.url} ({time.monotonic() - started_at:.1f}s)")
    elif args.action == "stop":
        stop(name=args.name)
    else:
        print(status(name=args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
