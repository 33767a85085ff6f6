"""The daemon's control socket: one JSON request per connection on a unix socket.

Requests: ``{"cmd": "show-calls"}`` -> the tracker's snapshot; ``{"cmd": "clear-calls", "conn":
ID or null}`` -> how many calls were released; ``{"cmd": "debug", "level": "debug"|"info"}``;
``{"cmd": "reload"}`` -> what the reload changed, or why it was refused (``fixup reload``);
``{"cmd": "stop"}`` -> the daemon stops and removes everything, rules and saved calls (``fixup stop``).
Answers are ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fixup.errors import FixupError, SetupError

log = logging.getLogger("fixup.control")

DEFAULT_SOCKET = "/run/fixup/fixup.sock"
MAX_REQUEST = 64 * 1024
MAX_ANSWER = 64 * 1024 * 1024
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}  # what `fixup debug` switches between


class ControlError(FixupError):
    """The control socket cannot be reached or answered with an error."""


class NoDaemon(ControlError):
    """Nothing listens on the control socket."""


class ControlledTracker(Protocol):
    def snapshot(self, now: float) -> dict: ...

    def clear(self, now: float, conn_id: int | None = None) -> int: ...


def set_log_level(level: str) -> None:
    """What ``{"cmd": "debug"}`` (and a reload's ``runtime.log_level``) does: set the level of
    every ``fixup`` logger; ``level`` is debug, info, warning or error."""
    logging.getLogger("fixup").setLevel(level.upper())


class ControlledVpdn(Protocol):
    """The part of the local PPTP server the control socket uses (``show vpdn``, ``clear vpdn``)."""

    def snapshot(self) -> dict: ...

    def clear(self, tunnel_id: int | None) -> int: ...


def dispatch(tracker: ControlledTracker, request: object, now: float,
             set_level: Callable[[str], None] = set_log_level, vpdn: ControlledVpdn | None = None) -> dict[str, Any]:
    """Answer one request (pure apart from ``set_level``)."""
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": 'request must be a JSON object with a "cmd" string'}
    cmd = request["cmd"]
    if cmd == "show-calls":
        result = tracker.snapshot(now)
        if vpdn is not None:  # one place for every drop counter (fixup show counters)
            result["vpdn_drops"] = vpdn.snapshot().get("drops", {})
        return {"ok": True, "result": result}
    if cmd == "clear-calls":
        conn = request.get("conn")
        if conn is not None and (not isinstance(conn, int) or isinstance(conn, bool)):
            return {"ok": False, "error": "conn must be an integer or null"}
        released = tracker.clear(now, conn)
        log.info("fixup: cleared %s, %d call(s) released", "all connections" if conn is None else f"connection {conn}", released)
        return {"ok": True, "result": {"released": released}}
    if cmd == "debug":
        level = request.get("level")
        if level not in LOG_LEVELS:
            return {"ok": False, "error": f"level must be one of {', '.join(LOG_LEVELS)}"}
        set_level(level)
        log.info("fixup: log level %s", level)
        return {"ok": True, "result": {"level": level}}
    if cmd in ("show-vpdn", "clear-vpdn"):
        return _vpdn(vpdn, cmd, request)
    return {"ok": False, "error": f"unknown command {cmd!r}"}


def _vpdn(vpdn: ControlledVpdn | None, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
    """``show vpdn`` / ``clear vpdn tunnel ID|all`` (PIX 6.x), for the ``terminate`` section."""
    if vpdn is None:
        return {"ok": False, "error": "no local PPTP termination: the policy has no 'terminate' section"}
    if cmd == "show-vpdn":
        return {"ok": True, "result": vpdn.snapshot()}
    tunnel = request.get("tunnel")
    if tunnel is not None and (not isinstance(tunnel, int) or isinstance(tunnel, bool)):
        return {"ok": False, "error": "tunnel must be an integer or null (all)"}
    return {"ok": True, "result": {"cleared": vpdn.clear(tunnel)}}


class ControlServer:
    """Serves :func:`dispatch` on a unix socket at ``path`` inside an asyncio loop."""

    def __init__(self, tracker: ControlledTracker, path: str, clock: Callable[[], float] = time.monotonic,
                 before_request: Callable[[], None] | None = None, vpdn: ControlledVpdn | None = None,
                 on_reload: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.tracker = tracker
        self.on_reload = on_reload
        self.on_stop = on_stop
        self.vpdn = vpdn
        self.before_request = before_request  # e.g. read the kernel path's counters
        self.path = path
        self.clock = clock
        self.server: asyncio.AbstractServer | None = None
        self.created = False
        self.refused = 0  # requests from peers without the right credentials

    def prepare(self) -> None:
        """Create the directory (0700), refuse when a daemon answers there, remove a stale socket.

        Done before the rules are installed so a second daemon does not touch the first one's rules."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _check_directory(directory)
        if not os.path.lexists(self.path):
            return
        if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
            raise SetupError(f"{self.path} exists and is not a socket")
        if _answers(self.path):
            raise SetupError(f"another fixup daemon is running at {self.path}")
        log.debug("removing stale socket %s", self.path)
        os.unlink(self.path)

    async def start(self) -> None:
        old = os.umask(0o077)
        try:
            self.server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_REQUEST)
        finally:
            os.umask(old)
        self.created = True
        log.debug("control socket %s", self.path)

    async def stop(self) -> None:
        """Stop serving; the socket file stays until :meth:`remove_socket`, which the daemon calls
        last, so ``fixup stop`` sees it go only once everything else is done."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def remove_socket(self) -> None:
        if self.created:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.created = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            refusal = self._refusal(writer)
            if refusal is not None:
                self.refused += 1
                await asyncio.wait_for(reader.readline(), timeout=5)  # read it, or the close resets
                writer.write(_encode({"ok": False, "error": refusal}))
                await writer.drain()
                return
            writer.write(_encode(await self._answer(reader)))
            await writer.drain()
        except Exception:  # noqa: BLE001 - a bad client never hurts the daemon
            log.debug("control request failed", exc_info=True)
        finally:
            writer.close()

    def _refusal(self, writer: asyncio.StreamWriter) -> str | None:
        """Only root, the daemon's own user, or a member of the socket's group (by the peer's
        primary group, SO_PEERCRED) may talk to the daemon; anyone else is told so."""
        sock = writer.get_extra_info("socket")
        try:
            _pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))
            group = os.stat(self.path).st_gid
        except (OSError, AttributeError):
            return "cannot check the peer's credentials"
        if uid in (0, os.geteuid()) or gid == group:
            return None
        log.warning("fixup: control socket: refused a request from uid %d gid %d", uid, gid)
        return "permission denied: root or the control socket's group only"

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            request = json.loads(line)
        except (ValueError, asyncio.LimitOverrunError, asyncio.TimeoutError) as err:
            return {"ok": False, "error": f"bad request: {err}"}
        try:
            if isinstance(request, dict) and request.get("cmd") == "reload" and self.on_reload is not None:
                result = await self.on_reload()
                return {"ok": True, "result": result}
            if isinstance(request, dict) and request.get("cmd") == "stop" and self.on_stop is not None:
                self.on_stop()
                return {"ok": True, "stopping": True}
            if self.before_request is not None:
                self.before_request()
            return dispatch(self.tracker, request, self.clock(), vpdn=self.vpdn)
        except Exception as err:  # noqa: BLE001 - report, do not die
            log.exception("control command failed")
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}


def _check_directory(directory: str) -> None:
    """The socket's directory must not let other users replace the socket: owned by root or by
    us, not writable by group or others (a ``control_socket`` outside /run/fixup)."""
    info = os.stat(directory)
    if info.st_uid not in (0, os.geteuid()):
        raise SetupError(f"control socket directory {directory} belongs to uid {info.st_uid}, not to root")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise SetupError(f"control socket directory {directory} is writable by other users "
                         f"(mode {stat.S_IMODE(info.st_mode):04o}): use a directory only root can write")


def _encode(answer: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(answer)
    except (TypeError, ValueError) as err:
        text = json.dumps({"ok": False, "error": f"cannot encode the answer: {err}"})
    return text.encode() + b"\n"


def refuse_if_running(path: str) -> None:
    """SetupError when a daemon answers at ``path`` (before anything else is probed or touched)."""
    if os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode) and _answers(path):
        raise SetupError(f"another fixup daemon is running at {path}")


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def request(path: str, obj: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its ``result``.

    Raises :class:`ControlError` with one clear line: no daemon, permission, timeout, or the
    daemon's own error."""
    data = _exchange(path, json.dumps(obj).encode() + b"\n", timeout)
    try:
        answer = json.loads(data)
    except ValueError as err:
        raise ControlError(f"fixup daemon at {path} sent a malformed answer: {err}") from err
    if not isinstance(answer, dict):
        raise ControlError(f"fixup daemon at {path} sent a malformed answer")
    if not answer.get("ok"):
        raise ControlError(f"fixup daemon: {answer.get('error', 'request failed')}")
    result = answer.get("result")
    return result if isinstance(result, dict) else {"result": result}


def _exchange(path: str, payload: bytes, timeout: float) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise NoDaemon(f"no fixup daemon at {path}") from err
        except PermissionError as err:
            raise ControlError(f"permission denied on {path} (run as root)") from err
        except OSError as err:
            raise ControlError(f"cannot connect to {path}: {err.strerror or err}") from err
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            return _read_all(sock)
        except socket.timeout as err:
            raise ControlError(f"fixup daemon at {path} did not answer within {timeout:g} s") from err
        except OSError as err:
            raise ControlError(f"fixup daemon at {path}: {err.strerror or err}") from err


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise ControlError("answer too large")
    return b"".join(chunks)
