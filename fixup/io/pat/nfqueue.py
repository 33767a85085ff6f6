"""The thin NFQUEUE shell: packets from the kernel into the pure tracker, verdicts back.

Direction comes from the input interface (inside -> OUTBOUND, outside -> INBOUND).  Whatever
goes wrong in here -- an unknown interface, an exception from the tracker, a failed verdict --
the packet is dropped and counted; the loop never dies (fail closed).

A packet that changed what the restart store keeps (``hold()`` says so: a control segment) has
its verdict held until the end of the burst the queue delivered, when ``after_burst`` has saved
every change of the burst in one transaction; then the held verdicts go, in order.  GRE, which
changes nothing saved, gets its verdict at once.  At most :data:`MAX_HELD` verdicts wait.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from fixup.errors import SetupError
from fixup.io.logs import RateLimitedLog
from fixup.proto.pat.verdict import Direction, Verdict

log = logging.getLogger("fixup.nfqueue")

QUEUE_MAX_LEN = 4096
MAX_HELD = 256


class PacketTracker(Protocol):
    """The part of :class:`fixup.proto.pat.tracker.Tracker` the shell uses."""

    def handle_packet(self, packet: bytes, direction: Direction, now: float) -> Verdict: ...

    def count(self, reason: str) -> None: ...


def interface_directions(inside: Iterable[str], outside: str,
                         nametoindex: Callable[[str], int] = socket.if_nametoindex) -> dict[int, Direction]:
    """ifindex -> direction, looked up once at start; SetupError for a missing interface."""
    directions: dict[int, Direction] = {}
    for name, direction in [*((n, Direction.OUTBOUND) for n in inside), (outside, Direction.INBOUND)]:
        try:
            directions[nametoindex(name)] = direction
        except OSError as err:
            raise SetupError(f"interface {name} does not exist") from err
    return directions


class QueueShell:
    """Binds NFQUEUE ``queue_num`` and feeds every packet to ``tracker``."""

    def __init__(self, tracker: PacketTracker, queue_num: int, directions: dict[int, Direction], *,
                 clock: Callable[[], float] = time.monotonic,
                 queue_factory: Callable[[], Any] | None = None,
                 after_packet: Callable[[], None] | None = None,
                 hold: Callable[[], bool] | None = None,
                 after_burst: Callable[[], None] | None = None) -> None:
        self.tracker = tracker
        self.after_packet = after_packet  # runs before the verdict: e.g. program the kernel GRE maps
        self.hold = hold  # whether this packet's verdict waits for after_burst (see module docstring)
        self.after_burst = after_burst
        self._held: list[tuple[Any, Verdict]] = []
        self.queue_num = queue_num
        self.directions = dict(directions)
        self.clock = clock
        self.queue_factory = queue_factory
        self.queue: Any = None
        self.errors = RateLimitedLog(log)

    def bind(self) -> None:
        """Open the netlink socket and bind the queue (SetupError when another process holds it)."""
        factory = self.queue_factory or _netfilter_queue
        try:
            queue = factory()
            queue.bind(self.queue_num, self.on_packet, max_len=QUEUE_MAX_LEN)
        except OSError as err:
            raise SetupError(f"cannot bind NFQUEUE {self.queue_num} (in use by another process, or not root?): {err}") from err
        self.queue = queue
        log.debug("bound NFQUEUE %d", self.queue_num)

    def fileno(self) -> int:
        return int(self.queue.get_fd())

    def process_pending(self) -> None:
        """Handle every packet waiting on the socket without blocking (the event loop's reader)."""
        try:
            self.queue.run(block=False)
        except Exception:  # noqa: BLE001 - the loop must survive anything
            self.tracker.count("shell-error")
            self.errors.error("fixup: error reading NFQUEUE %d", self.queue_num)
        finally:
            self.release()

    def release(self) -> None:
        """Save the burst's changes, then give the held verdicts (in order)."""
        if not self._held:
            return
        held, self._held = self._held, []
        try:
            if self.after_burst is not None:
                self.after_burst()
        except Exception:  # noqa: BLE001 - the verdicts must go out whatever happened
            self.tracker.count("shell-error")
            self.errors.error("fixup: error saving a burst of control segments")
        for packet, verdict in held:
            try:
                self._give(packet, verdict)
            except Exception:  # noqa: BLE001 - one bad verdict does not stop the others
                self.tracker.count("shell-error")
                self.errors.error("fixup: error giving a held verdict")

    def on_packet(self, packet: Any) -> None:
        """The netfilterqueue callback: exactly one verdict per packet, drop on any failure."""
        try:
            self._decide(packet)
        except Exception:  # noqa: BLE001 - the loop must survive anything
            self.tracker.count("shell-error")
            self.errors.error("fixup: error handling a queued packet, dropped")
            try:
                packet.drop()
            except Exception:  # noqa: BLE001 - verdict may already be set
                log.debug("drop after error failed", exc_info=True)

    def _decide(self, packet: Any) -> None:
        direction = self.directions.get(packet.indev)
        if direction is None:
            self.tracker.count("unknown-interface")
            packet.drop()
            return
        payload = packet.get_payload()
        verdict = self.tracker.handle_packet(payload, direction, self.clock())
        if self.after_packet is not None:
            self.after_packet()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fixup: %s %d bytes: %s", direction.value, len(payload), _describe(verdict))
        if self.hold is not None and self.hold():
            self._held.append((packet, verdict))
            if len(self._held) >= MAX_HELD:
                self.release()
            return
        self._give(packet, verdict)

    @staticmethod
    def _give(packet: Any, verdict: Verdict) -> None:
        if not verdict.accept:
            packet.drop()
            return
        if verdict.packet is not None:
            packet.set_payload(verdict.packet)
        packet.accept()

    def close(self) -> None:
        """Unbind the queue; packets still queued are dropped by the kernel (fail closed)."""
        if self.queue is None:
            return
        self.release()
        try:
            self.queue.unbind()
        except Exception:  # noqa: BLE001 - closing on the way out
            log.debug("unbind failed", exc_info=True)
        self.queue = None


def _describe(verdict: Verdict) -> str:
    action = "drop" if not verdict.accept else ("rewrite" if verdict.packet is not None else "accept")
    return f"{action} ({verdict.reason})" if verdict.reason else action


def _netfilter_queue() -> Any:
    from netfilterqueue import NetfilterQueue

    return NetfilterQueue()
