"""permit-pptp rules (fixup.io.pat.permit, issue 13 item 3) against a fake nft/iptables-nft: one
accept rule for marked GRE at the head of every host forward base chain -- never in fixup's own
table nor in the xtables chains where its queue jumps live -- found again by its comment,
removed by handle; nothing else of the host's firewall touched."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

import pytest

from fixup.io.pat import permit
from fixup.io.pat.netfilter import Commands

pytestmark = pytest.mark.unit

CHAINS = [
    {"family": "inet", "table": "filter", "name": "forward", "hook": "forward", "policy": "drop"},
    {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"},
    {"family": "ip", "table": "mangle", "name": "FORWARD", "hook": "forward", "policy": "accept"},
    {"family": "ip", "table": "fixup", "name": "gre_out", "hook": "forward", "policy": "accept"},
    {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "hook": "forward", "policy": "accept"},
    {"family": "ip", "table": "nat", "name": "POSTROUTING", "hook": "postrouting", "policy": "accept"},
    {"family": "ip6", "table": "filter", "name": "forward", "hook": "forward", "policy": "drop"},
]


class FakeNetfilter(Commands):
    """Chains as above; remembers the rules inserted, answers listings and -C from them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.rules: dict[tuple[str, str, str], list[str]] = {}

    def run(self, argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        out, rc = "", 0
        if argv[:4] == ["nft", "-j", "list", "chains"]:
            out = json.dumps({"nftables": [{"metainfo": {}}, *({"chain": c} for c in CHAINS)]})
        elif argv[:3] == ["nft", "insert", "rule"]:
            self.rules.setdefault(tuple(argv[3:6]), []).append(" ".join(argv[6:]))
        elif argv[:2] == ["nft", "list"] or argv[:3] == ["nft", "-a", "list"]:
            key = tuple(argv[-3:])
            out = "\n".join(f"{rule} # handle {i + 7}" for i, rule in enumerate(self.rules.get(key, [])))
        elif argv[:3] == ["nft", "delete", "rule"]:
            key = tuple(argv[3:6])
            self.rules[key] = [r for i, r in enumerate(self.rules.get(key, [])) if i + 7 != int(argv[-1])]
        elif argv[0] == "iptables-nft":
            key = ("ip", argv[2], argv[4])
            rule = " ".join(argv[5:] if argv[3] != "-I" else argv[6:])
            held = self.rules.setdefault(key, [])
            if argv[3] == "-I":
                held.append(rule)
            elif argv[3] in ("-C", "-D"):
                rc = 0 if rule in held else 1
                if argv[3] == "-D" and rule in held:
                    held.remove(rule)
        return subprocess.CompletedProcess(argv, rc, out, "")


@pytest.fixture(autouse=True)
def tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(permit.shutil, "which", lambda name: f"/usr/sbin/{name}")


def test_one_rule_heads_every_host_forward_chain_and_none_of_ours() -> None:
    fake = FakeNetfilter()
    added = permit.ensure(fake)
    assert sorted(added) == [("inet", "filter", "forward"), ("inet", "firewalld", "filter_FORWARD"),
                             ("ip", "filter", "FORWARD")]
    nft_rule = fake.rules[("inet", "filter", "forward")][0]
    assert "meta mark & 0x01000000 == 0x01000000 ip protocol gre" in nft_rule and "accept" in nft_rule
    assert f'"{permit.COMMENT}"' in nft_rule
    xt = [c for c in fake.calls if c[0] == "iptables-nft" and c[3] == "-I"]
    assert xt and xt[0][:6] == ["iptables-nft", "-t", "filter", "-I", "FORWARD", "1"]
    assert not any(c[0] == "iptables-nft" and c[2] == "mangle" for c in fake.calls)  # our queue jumps live there
    assert permit.ensure(fake) == []  # already there: nothing added twice
    assert len(permit.left(fake)) == 3


def test_remove_takes_exactly_our_rules_away() -> None:
    fake = FakeNetfilter()
    fake.rules[("inet", "filter", "forward")] = ["ct state established,related accept"]
    permit.ensure(fake)
    permit.remove(fake)
    assert fake.rules[("inet", "filter", "forward")] == ["ct state established,related accept"]
    assert fake.rules[("ip", "filter", "FORWARD")] == []
    assert permit.left(fake) == []


def test_the_hint_is_the_rule_permit_would_add() -> None:
    nft_part, iptables_part = permit.hint().split("   # or: ")
    assert nft_part.startswith("nft insert rule inet filter forward meta mark & 0x01000000 == 0x01000000")
    assert "--mark 0x1000000/0x1000000" in iptables_part
