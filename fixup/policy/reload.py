"""What a reload may change: the old and the new :class:`~fixup.policy.loader.Policy` compared key by key
(pure).  ``fixup reload`` / SIGHUP apply what :func:`plan_reload` allows and refuse, with the
key and the reason, what only a restart can change (issue 12: interfaces, PAT address, GRE mode,
queue, control socket, where PPTP is accepted).  ``fixup.pptp.ports`` rebuilds the rules in place
(the calls on the ports that stay keep their translations).

Everything else applies at once: timeouts and log level to the running tracker, the dial-in
settings (authentication order, encryption, users, AAA groups, pool, DNS/WINS, session limit) to
the sessions that start after the reload; live sessions keep what they negotiated, and a pool
change never takes an address from a live session.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from fixup.errors import PolicyError

if TYPE_CHECKING:
    from fixup.policy.loader import Policy

# Policy field -> the policy key an operator writes, for fields only a restart can change.
RESTART_ONLY = {
    "inside": "inside",
    "outside": "outside",
    "pat_address": "pat_address",
    "gre": "fixup.pptp.gre",
    "permit": "fixup.pptp.permit",
    "queue_num": "runtime.queue",
    "control_socket": "runtime.control_socket",
    "metrics_port": "runtime.metrics_port",
    "state_dir": "runtime.state_dir",
    "bpf_dir": "runtime.bpf_dir",
}
RESTART_ONLY_TERMINATE = {
    "listen_address": "terminate.listen",
    "listen_interface": "terminate.listen",
    "local_address": "terminate.local_address",
}
KEY_NAMES = {"pptp_ports": "fixup.pptp.ports", "timeouts": "fixup.pptp.timeouts", "limits": "fixup.pptp.limits", "log_level": "runtime.log_level",
             "aaa": "aaa"}
IGNORED = ("source",)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The keys that differ (as the operator writes them), in policy order."""

    changed: tuple[str, ...]

    @property
    def terminate_changed(self) -> bool:
        return any(key == "aaa" or key.startswith("terminate") for key in self.changed)

    @property
    def rules_changed(self) -> bool:
        """The netfilter rules must be rebuilt (the control ports changed)."""
        return "fixup.pptp.ports" in self.changed

    def describe(self) -> str:
        return ", ".join(self.changed) if self.changed else "nothing changed"


def plan_reload(old: Policy, new: Policy) -> ReloadPlan:
    """The keys a reload from ``old`` to ``new`` changes; :class:`PolicyError` (file, key and
    "needs a restart") when one of them cannot change in a running daemon."""
    changed: list[str] = []
    for f in fields(old):
        if f.name in IGNORED:
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if _same(before, after):
            continue
        if f.name in RESTART_ONLY:
            _refuse(new, RESTART_ONLY[f.name])
        if f.name == "terminate":
            changed += _terminate_changes(new, before, after)
        else:
            changed.append(KEY_NAMES.get(f.name, f.name))
    return ReloadPlan(tuple(changed))


def _terminate_changes(new: Policy, before: Any, after: Any) -> list[str]:
    if before is None or after is None:
        _refuse(new, "terminate", "adding or removing the dial-in server")
    changed = []
    for f in fields(before):
        if _same(getattr(before, f.name), getattr(after, f.name)):
            continue
        if f.name in RESTART_ONLY_TERMINATE:
            _refuse(new, RESTART_ONLY_TERMINATE[f.name])
        changed.append(f"terminate.{f.name}")
    return changed


def _same(before: Any, after: Any) -> bool:
    """Equality that also holds for the read-only mappings (users, aaa groups)."""
    if hasattr(before, "items") and hasattr(after, "items"):
        return dict(before.items()) == dict(after.items())
    return bool(before == after)


def _refuse(new: Policy, key: str, what: str = "") -> None:
    change = what or "changing it"
    raise PolicyError(f"{change} needs a restart (systemctl restart fixup); the running policy stays in force",
                      key=key, path=new.source)
