"""The control socket's guards (issue 11 item 14), through real unix sockets: a peer that is not
root, the daemon's user or in the socket's group is refused; a directory others can write is
refused at start.  Needs root (the refused peer is a child that drops to uid/gid 65534)."""
from __future__ import annotations

import asyncio
import os
import tempfile

import pytest

from fixup.errors import SetupError
from fixup.io.control import ControlServer, request
from fixup.proto.pat.tracker import Tracker
from tests.unit.flows import tracker

pytestmark = pytest.mark.netns


def ask_as(uid: int, gid: int, path: str) -> str:
    """Send show-calls from a child running as ``uid``/``gid``; what it got back, as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, ask, report
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            answer = f"ok {sorted(request(path, {'cmd': 'show-calls'}))}"
        except Exception as err:  # noqa: BLE001 - reported to the parent
            answer = f"error {err}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_only_root_or_the_sockets_group_is_answered(netns_ready: None) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a peer as another user")
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o711)
        path = os.path.join(work, "fixup.sock")
        server = ControlServer(tracker(), path)
        server.prepare()

        async def scenario() -> list[str]:
            await server.start()
            os.chmod(path, 0o666)  # let the filesystem through: the daemon must refuse by itself
            loop = asyncio.get_running_loop()
            try:
                answers = [await loop.run_in_executor(None, ask_as, 65534, 65534, path)]
                os.chown(path, 0, 65534)  # now the peer's group is the socket's group
                answers.append(await loop.run_in_executor(None, ask_as, 65534, 65534, path))
                return answers
            finally:
                await server.stop()

        stranger, member = asyncio.run(scenario())
    assert stranger.startswith("error") and "permission denied" in stranger, stranger
    assert member.startswith("ok") and "connections" in member, member
    assert server.refused == 1


def test_a_socket_directory_others_can_write_is_refused(netns_ready: None) -> None:
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o777)
        with pytest.raises(SetupError, match="writable by other users"):
            ControlServer(Tracker.__new__(Tracker), os.path.join(work, "fixup.sock")).prepare()
