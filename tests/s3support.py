"""S3 servers for the tests: moto's standalone server, or MinIO named by the environment.

moto runs in this process (``ThreadedMotoServer`` on 127.0.0.1, a free port), started once
per test session on first use and stopped at exit. When MINIO_ENDPOINT, MINIO_ACCESS_KEY and
MINIO_SECRET_KEY are set, that server is used instead: MINIO_ENDPOINT is ``host:port`` or
``http(s)://host:port``; MINIO_SECURE=true|false overrides the scheme (default: plain HTTP).

Also here: a TCP proxy that corrupts or drops uploads on their way to the server, a closed
port, and a second moto server that checks credentials (the shared one accepts any).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from evidence_store.objects.s3 import S3Store

MOTO_ACCESS_KEY = "moto-test-access-key"
MOTO_SECRET_KEY = "moto-test-secret-key-0123456789"

_lock = threading.Lock()
_server: S3Server | None = None
_auth_server: S3Server | None = None


@dataclass(frozen=True)
class S3Server:
    """Where the tests' S3 server listens and how to log in."""

    host: str
    port: int
    secure: bool
    access_key: str
    secret_key: str
    is_moto: bool

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def minio_from_env() -> S3Server | None:
    """The MinIO server the environment names, if MINIO_ENDPOINT and its keys are all set."""
    endpoint = os.environ.get("MINIO_ENDPOINT", "")
    access_key = os.environ.get("MINIO_ACCESS_KEY", "")
    secret_key = os.environ.get("MINIO_SECRET_KEY", "")
    if not (endpoint and access_key and secret_key):
        return None
    secure = False
    if "://" in endpoint:
        scheme, _, endpoint = endpoint.partition("://")
        secure = scheme.lower() == "https"
    endpoint = endpoint.rstrip("/")
    if os.environ.get("MINIO_SECURE"):
        secure = os.environ["MINIO_SECURE"].strip().lower() in ("1", "true", "yes", "on")
    host, _, port = endpoint.rpartition(":")
    if not host:
        host, port = endpoint, "443" if secure else "80"
    return S3Server(host.strip("[]"), int(port), secure, access_key, secret_key, is_moto=False)


def s3_server() -> S3Server:
    """The session's S3 server: MinIO from the environment, else moto (started on first use)."""
    global _server
    with _lock:
        if _server is None:
            _server = minio_from_env() or _start_moto()
        return _server


def _start_moto() -> S3Server:
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO; failures are reported by the tests themselves.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    atexit.register(server.stop)
    host, port = server.get_host_and_port()
    return S3Server(host, port, False, MOTO_ACCESS_KEY, MOTO_SECRET_KEY, is_moto=True)


def auth_checking_server() -> S3Server:
    """A server that refuses unknown credentials.

    MinIO does so anyway. moto checks signatures only when INITIAL_NO_AUTH_ACTION_COUNT is
    set, a process-wide setting, so a second moto runs in a child process with it set to 0:
    every request there must be signed by an IAM user, and none exists.
    """
    global _auth_server
    env_server = minio_from_env()
    if env_server is not None:
        return env_server
    with _lock:
        if _auth_server is None:
            port = free_port()
            env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            atexit.register(_stop_process, process)
            _wait_for_port("127.0.0.1", port, process)
            _auth_server = S3Server(
                "127.0.0.1", port, False, MOTO_ACCESS_KEY, MOTO_SECRET_KEY, is_moto=True
            )
        return _auth_server


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto server did not listen on {host}:{port} within 30 s")


def free_port() -> int:
    """A port nothing listens on right now (it may be taken later; good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_bucket(request: Any = None) -> str:
    """A fresh bucket name, readable in a MinIO console: ``ev-<test name>-<random>``."""
    name = getattr(getattr(request, "node", None), "name", "") or "test"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:36].strip("-") or "test"
    return f"ev-{slug}-{uuid.uuid4().hex[:12]}"


def make_s3_store(
    request: Any = None,
    *,
    bucket: str | None = None,
    server: S3Server | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> S3Store:
    """A store on a fresh bucket (created with Object Lock), so tests never share objects.

    Defaults for tests: 1 day of retention, COMPLIANCE on moto but GOVERNANCE on MinIO (so a
    test server can be cleaned with governance bypass), no legal hold, and 5 MiB parts (the
    S3 minimum) so that moderately sized objects take the multipart path. ``endpoint``
    redirects the requests (through a proxy) while keeping the server's credentials.
    """
    server = server or s3_server()
    settings: dict[str, Any] = {
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "secure": server.secure,
        "retention_mode": "COMPLIANCE" if server.is_moto else "GOVERNANCE",
        "retention_days": 1,
        "legal_hold": False,
        "part_size": 5 << 20,
    }
    settings.update(options)
    store = S3Store(endpoint or server.endpoint, bucket or unique_bucket(request), **settings)
    store.check()
    return store


Action = Literal["pass", "corrupt", "drop"]


def upload_action(method: str, target: str) -> Action:
    """Default proxy policy: corrupt every object upload (PutObject and UploadPart)."""
    path, _, query = target.partition("?")
    if method == "PUT" and "/sha256/" in path and (not query or "partNumber=" in query):
        return "corrupt"
    return "pass"


class TamperingProxy:
    """A TCP proxy on 127.0.0.1 in front of a plain-HTTP S3 server that tampers with uploads.

    It frames HTTP/1.1 requests by Content-Length (what minio-py sends) and, per request,
    asks ``policy(method, target)``: "pass" forwards it, "corrupt" flips one bit in the
    middle of its body, "drop" closes the connection instead of forwarding it.
    """

    def __init__(
        self, host: str, port: int, policy: Callable[[str, str], Action] = upload_action
    ) -> None:
        self._upstream = (host, port)
        self._policy = policy
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.endpoint = f"127.0.0.1:{self.port}"
        self.tampered: list[tuple[str, str, Action]] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> TamperingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        # Responses go back untouched.
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    data = client.recv(max(65536, length - len(buffer)))
                    if not data:
                        return
                    buffer += data
                body, buffer = bytearray(buffer[:length]), buffer[length:]
                action = self._policy(method, target)
                if action == "drop":
                    self.tampered.append((method, target, action))
                    return
                if action == "corrupt" and body:
                    body[len(body) // 2] ^= 0x01
                    self.tampered.append((method, target, action))
                upstream.sendall(head + b"\r\n\r\n" + bytes(body))
        except (OSError, ValueError):
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
