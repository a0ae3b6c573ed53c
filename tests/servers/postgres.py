"""A real, throw-away PostgreSQL server for the test suite.

``run_postgres()`` initialises a fresh cluster in a temporary directory, starts it on a free loopback
port, and always stops it and removes the directory when the block ends. Debian's server binaries are
used (``/usr/lib/postgresql/<version>/bin``); when they are missing and we are root, Debian's
``postgresql`` package is installed first, so a clean CI machine needs no manual step.

PostgreSQL refuses to run as root, so under root every server command runs as the unprivileged
``postgres`` system user (created by the package, or here when absent).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from server.ports import free_port
from tests.servers.apt import apt_install

SERVICE_USER = "postgres"
"""The OS user that owns the cluster when the tests run as root."""
SUPERUSER = "postgres"
"""The database superuser created by initdb; loopback connections are trusted."""
DEFAULT_DATABASE = "s3test"
START_TIMEOUT_S = 60
_VERSION_DIR = re.compile(r"^\d+$")


class PostgresSetupError(RuntimeError):
    """The server could not be installed, initialised or started; the message says why."""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<N>/bin`` that holds initdb, pg_ctl and postgres."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted(
        (int(p.name) for p in root.iterdir() if _VERSION_DIR.match(p.name)),
        reverse=True,
    )
    for version in versions:
        bin_dir = root / str(version) / "bin"
        if all((bin_dir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bin_dir
    return None


def install_postgresql() -> Path:
    """Install Debian's ``postgresql`` package (root only) and return its bin directory."""
    apt_install(
        ["postgresql"], "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin", PostgresSetupError
    )
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresSetupError("installed `postgresql` but found no server under /usr/lib/postgresql")
    return bin_dir


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and how to reach it."""

    host: str
    port: int
    socket_dir: Path
    user: str = SUPERUSER

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """SQLAlchemy URL of ``database`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = DEFAULT_DATABASE) -> str:
        """libpq connection string, for psycopg directly."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def create_database(self, prefix: str = "t") -> str:
        """Create a fresh empty database with a unique name and return its name."""
        name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any connection still open to it."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextmanager
    def fresh_database(self, prefix: str = "t") -> Iterator[str]:
        """A new empty database for one test module; yields its SQLAlchemy URL, drops it after."""
        name = self.create_database(prefix)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


class _Runner:
    """Runs server commands as the service user when we are root, as ourselves otherwise."""

    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.account = _ensure_service_user() if self.as_root else None

    def chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def run(self, argv: Sequence[str], *, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self.as_root:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        # cwd inside the cluster's directory: the service user may not be able to enter ours.
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _wait_until_accepting(server: PostgresServer, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(server.dsn("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as e:
            last = e
            time.sleep(0.1)
    raise PostgresSetupError(f"PostgreSQL did not accept connections in time: {last}")


def _stop(runner: _Runner, bin_dir: Path, data_dir: Path, cwd: Path) -> None:
    """Stop the server; if pg_ctl cannot, end the postmaster we started by its pid."""
    done = runner.run(
        [str(bin_dir / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w", "-t", "30"],
        cwd=cwd,
        timeout_s=40,
    )
    if done.returncode == 0:
        return
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def run_postgres(*, database: str = DEFAULT_DATABASE) -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL cluster with ``database`` created; stop and delete it afterwards."""
    bin_dir = find_bin_dir() or install_postgresql()
    runner = _Runner()
    # Not pytest's tmp dir: that one is private to root and the service user could not enter it.
    base = Path(tempfile.mkdtemp(prefix="s3-pg-"))
    data_dir = base / "data"
    socket_dir = base / "sock"
    log_file = base / "server.log"
    started = False
    try:
        os.chmod(base, 0o700)
        runner.chown(base)
        init = runner.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=base,
            timeout_s=120,
        )
        if init.returncode != 0:
            raise PostgresSetupError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        socket_dir.mkdir()
        runner.chown(socket_dir)

        for _attempt in range(3):
            port = free_port()
            # Durability is irrelevant for a throw-away cluster; these make every commit cheap.
            options = (
                f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            start = runner.run(
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(data_dir),
                    "-l",
                    str(log_file),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "-o",
                    options,
                ],
                cwd=base,
                timeout_s=START_TIMEOUT_S + 10,
            )
            if start.returncode == 0:
                started = True
                break
            # The most likely cause is another process taking the port between probe and bind.
            if "already in use" not in _tail(log_file):
                break
        if not started:
            raise PostgresSetupError(f"pg_ctl start failed:\n{_tail(log_file)}")

        server = PostgresServer(host="127.0.0.1", port=port, socket_dir=socket_dir)
        _wait_until_accepting(server, time.monotonic() + START_TIMEOUT_S)
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        yield server
    finally:
        if started or (data_dir / "postmaster.pid").exists():
            _stop(runner, bin_dir, data_dir, base)
        shutil.rmtree(base, ignore_errors=True)
