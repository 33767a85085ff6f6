"""Shared set-up of the netns tests: skip (with the reason) unless this host can run them.

They need root, ``ip netns`` and the xtables NFQUEUE target through iptables-nft (the nftables
``queue`` statement is not required).  The NFQUEUE probe runs inside a throw-away namespace so
the host's own rules are never touched.  Namespace names start with ``fxt-``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from fixup.lab.topology import delete_namespace

TEST_PREFIX = "fxt-"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)


def _why_not_runnable() -> str | None:
    """None when the netns tests can run here, else the reason to skip."""
    if os.geteuid() != 0:
        return "netns tests need root"
    for tool in ("ip", "iptables-nft", "nft"):
        if shutil.which(tool) is None:
            return f"netns tests need {tool}"
    probe = f"{TEST_PREFIX}probe-{uuid.uuid4().hex[:6]}"
    if _run("ip", "netns", "add", probe).returncode != 0:
        return "netns tests need 'ip netns add' (network namespaces)"
    try:
        ipt = ("ip", "netns", "exec", probe, "iptables-nft", "-t", "mangle")
        if _run(*ipt, "-N", "FXT_PROBE").returncode != 0:
            return "iptables-nft does not work in a network namespace"
        nfqueue = _run(*ipt, "-A", "FXT_PROBE", "-p", "253", "-j", "NFQUEUE", "--queue-num", "1")
        if nfqueue.returncode != 0:
            return f"no xtables NFQUEUE target via iptables-nft: {nfqueue.stderr.strip()}"
    finally:
        delete_namespace(probe)
    return None


_SKIP_REASON: list[str | None] = []


def netns_skip_reason() -> str | None:
    """The probe's answer, computed once per session."""
    if not _SKIP_REASON:
        _SKIP_REASON.append(_why_not_runnable())
    return _SKIP_REASON[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``netns`` test with one clear reason when the host cannot run them."""
    netns_items = [item for item in items if item.get_closest_marker("netns")]
    if not netns_items:
        return
    reason = netns_skip_reason()
    if reason is None:
        return
    for item in netns_items:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def netns_ready() -> Iterator[None]:
    """Fails loudly if a test asks for namespaces on a host that cannot provide them."""
    reason = netns_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    yield
