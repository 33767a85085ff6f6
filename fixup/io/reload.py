"""Reload of the running daemon's policy: SIGHUP, ``fixup reload`` (control socket) and
``systemctl reload fixup`` all end here.

The file is read and validated again; an invalid policy, or one that changes what only a restart
can change (:mod:`fixup.policy.reload`), is refused with its one-line error and the running
policy stays in force.  A valid one is applied without dropping a PAT call or a dial-in session.
"""
from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Callable

from fixup.errors import FixupError
from fixup.io.control import set_log_level
from fixup.io.service import Notifier
from fixup.policy.loader import load_policy
from fixup.policy.reload import plan_reload

if TYPE_CHECKING:
    from fixup.io.vpdn.terminate_io import TerminateIo
    from fixup.policy.loader import Policy
    from fixup.proto.pat.tracker import Tracker

log = logging.getLogger("fixup")


class Reloader:
    """Holds the policy in force; :meth:`reload` swaps it for the file's current contents."""

    def __init__(self, policy: Policy, pat: IPv4Address, tracker: Tracker, vpdn: TerminateIo | None, *,
                 debug: bool = False, notifier: Notifier | None = None,
                 set_lease: Callable[[float], None] | None = None,
                 rebuild_rules: Callable[[Policy, Policy], None] | None = None) -> None:
        self.policy = policy
        self.rebuild_rules = rebuild_rules  # old, new policy: the netfilter rules for new control ports
        self.set_lease = set_lease  # the kernel paths: a new gre_lease applies from the next renewal
        self.pat = pat
        self.tracker = tracker
        self.vpdn = vpdn
        self.debug = debug  # `fixup run --debug` keeps debug logging whatever the policy says
        self.notifier = notifier or Notifier({})
        self.reloads = {"ok": 0, "refused": 0}
        self.last: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def reload(self) -> dict[str, Any]:
        """Re-read the policy file; the answer ``fixup reload`` prints: ok, what changed or why not."""
        async with self._lock:  # two SIGHUPs in a row apply one after the other
            self.notifier.reloading()
            answer = await self._reload()
            self.notifier.ready(f"reload {'done' if answer['ok'] else 'refused'}: "
                                f"{', '.join(answer.get('changed', [])) or answer.get('error', 'nothing changed')}")
            return answer

    async def _reload(self) -> dict[str, Any]:
        """Read, check and apply the policy file; the answer of :meth:`reload`."""
        try:
            new = load_policy(self.policy.source)
            plan = plan_reload(self.policy, new)
        except (FixupError, OSError) as err:
            self.reloads["refused"] += 1
            self.last = {"ok": False, "error": str(err)}
            log.error("fixup: reload refused: %s", err)
            return self.last
        if plan.rules_changed and self.rebuild_rules is not None:
            try:
                self.rebuild_rules(self.policy, new)
            except FixupError as err:
                self.reloads["refused"] += 1
                self.last = {"ok": False, "error": f"the rules for {', '.join(str(p) for p in new.pptp_ports)} "
                                                   f"could not be installed: {err}"}
                log.error("fixup: reload refused: %s", self.last["error"])
                return self.last
        self.tracker.config = new.tracker_config(self.pat)
        if self.set_lease is not None:
            self.set_lease(new.timeouts.gre_lease)
        if not self.debug:
            set_log_level(new.log_level)
        if self.vpdn is not None and new.terminate is not None and plan.terminate_changed:
            await self.vpdn.reload(new.terminate)
        self.policy = new
        self.reloads["ok"] += 1
        self.last = {"ok": True, "changed": list(plan.changed)}
        log.info("fixup: reloaded %s: %s", new.source, "changed " + plan.describe() if plan.changed else plan.describe())
        return self.last

    def snapshot(self) -> dict[str, Any]:
        return {"policy": self.policy.source, **{f"reloads_{k}": v for k, v in self.reloads.items()},
                "last_reload": self.last}
