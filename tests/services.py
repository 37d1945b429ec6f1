"""Private PostgreSQL and Redis servers for tests that stop and start them (the machine's shared
ones on 5432 and 6379 serve other tests and people: never restart those).

Each server lives in a temporary directory on a free port and is always stopped by its fixture,
even when the test fails. As root (CI runs as root) PostgreSQL runs as the `postgres` user,
which initdb requires.

    def test_x(private_postgres, private_redis):
        private_postgres.restart(down_s=3)
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.processes import free_port, spawn, stop_all, wait_for



def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """initdb in a temporary directory, `pg_ctl start` on a free port, trust authentication."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        if self.bin is None:
            pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
        self.port = free_port()
        # Under /tmp, not pytest's tmp_path: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="studio-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin / tool), *args], user=self.user, capture_output=True, text=True,
                                cwd=self.root, timeout=60)
        if check and result.returncode != 0:
            pytest.fail(f"{tool} failed ({result.returncode}): {result.stdout}{result.stderr}{self.tail()}")
        return result

    def tail(self) -> str:
        return f"\n--- postgres log\n{self.log.read_text()[-2000:]}" if self.log.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """fast: what a service restart does (open connections are cut, the server shuts down cleanly)."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-D", str(self.data), "-m", mode, check=False)

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-t", "30", "-D", str(self.data), "-m", "immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """redis-server on a free port, nothing saved to disk: a restart loses every message, as a
    Redis without persistence does."""

    def __init__(self, root: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server is not installed")
        self.port, self.root, self.proc = free_port(), root, None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.root / "redis.log", "a")
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--daemonize", "no", "--dir", str(self.root)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start: {(self.root / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def migrated_database(server: PrivatePostgres, name: str = "studio") -> str:
    """A database on `server` with the studio's migrations applied; its URL."""
    from tests.conftest import migrate

    url = server.create_database(name)
    migrate(url)
    return url


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


class S3Server:
    """moto's standalone S3 server (a real HTTP server speaking the S3 protocol) on 127.0.0.1;
    each test gets a bucket of its own."""

    ACCESS_KEY, SECRET_KEY, REGION = "studio-test", "studio-test-secret", "us-east-1"

    def __init__(self, root: Path) -> None:
        self.port, self.root = free_port(), root
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY}
        self.proc = spawn(["-H", "127.0.0.1", "-p", str(self.port)], env, root / "moto.log", module="moto.server")
        wait_for(lambda: _accepts(self.port) or self.proc.poll() is not None, 60, "the S3 server (moto) to listen",
                 interval=0.1, log=root / "moto.log")
        if self.proc.poll() is not None:
            pytest.fail(f"moto.server exited: {(root / 'moto.log').read_text()[-2000:]}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, bucket: str, prefix: str = "studio") -> dict[str, str]:
        """The studio settings that put the artifact store in `bucket` on this server."""
        return {"STUDIO_ARTIFACT_URL": f"s3://{bucket}/{prefix}", "STUDIO_S3_ENDPOINT_URL": self.endpoint,
                "STUDIO_S3_REGION": self.REGION, "STUDIO_S3_ACCESS_KEY_ID": self.ACCESS_KEY,
                "STUDIO_S3_SECRET_ACCESS_KEY": self.SECRET_KEY}

    def create_bucket(self) -> str:
        import uuid

        import boto3

        name = f"studio-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name=self.REGION, aws_access_key_id=self.ACCESS_KEY,
                     aws_secret_access_key=self.SECRET_KEY).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        stop_all([self.proc], timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, settings, monkeypatch) -> dict[str, str]:
    """The artifact store of this test's settings (web side) in a fresh bucket on the S3 server."""
    from app import config

    env = s3_server.env(s3_server.create_bucket())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
        setattr(settings, key.removeprefix("STUDIO_").lower(), value)
    config.get_settings.cache_clear()
    return env
