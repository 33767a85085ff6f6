"""The hostile tier (issue 11): floods and malformed input against the real daemon, in namespaces
of its own (``fxh-*``).  Skips with the netns tier's reason where namespaces cannot be made."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.netns.conftest import netns_skip_reason


@pytest.fixture(scope="session")
def hostile_ready() -> Iterator[None]:
    reason = netns_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    yield
