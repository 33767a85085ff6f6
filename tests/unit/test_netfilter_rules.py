"""Pure tests of the generated netfilter rules (fixup.io.pat.netfilter): no command is run for real."""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest

from fixup.errors import SetupError
from fixup.io.pat import netfilter
from fixup.io.pat.netfilter import Capabilities, Commands, RuleSet, build_ruleset, nft_script, xtables_commands
from fixup.policy.loader import Policy

pytestmark = pytest.mark.unit

PAT = IPv4Address("198.51.100.1")
XTABLES = Capabilities(nft_binary=True, iptables_nft_binary=True, nft_queue=False, xt_nfqueue=True)
NFT_QUEUE = Capabilities(nft_binary=True, iptables_nft_binary=True, nft_queue=True, xt_nfqueue=True)
NOTHING = Capabilities(nft_binary=True, iptables_nft_binary=True, nft_queue=False, xt_nfqueue=False)


def policy(**changes: object) -> Policy:
    fields: dict[str, object] = dict(inside=("br-in",), outside="gw-out", pptp_ports=(1723,), queue_num=1723,
                                     gre="queue")
    fields.update(changes)
    return Policy(**fields)  # type: ignore[arg-type]


def xt_lines(rules: RuleSet) -> list[str]:
    return [" ".join(argv) for argv in rules.xtables]


def test_xtables_flavour_queues_control_both_ways_and_gre() -> None:
    rules = build_ruleset(policy(), PAT, XTABLES)
    assert rules.flavour == "xtables"
    assert xt_lines(rules) == [
        "iptables-nft -t mangle -N FIXUP_FWD",
        "iptables-nft -t mangle -A FIXUP_FWD -i br-in -o gw-out -p tcp --dport 1723 -j NFQUEUE --queue-num 1723",
        "iptables-nft -t mangle -A FIXUP_FWD -i gw-out -o br-in -p tcp --sport 1723 -j NFQUEUE --queue-num 1723",
        "iptables-nft -t mangle -A FIXUP_FWD -i br-in -o gw-out -p gre -j NFQUEUE --queue-num 1723",
        "iptables-nft -t mangle -I FORWARD 1 -p tcp -j FIXUP_FWD",  # other traffic never enters
        "iptables-nft -t mangle -I FORWARD 1 -p gre -j FIXUP_FWD",
        "iptables-nft -t raw -N FIXUP_PRE",
        "iptables-nft -t raw -A FIXUP_PRE -i gw-out -d 198.51.100.1 -p gre -j NFQUEUE --queue-num 1723",
        "iptables-nft -t raw -I PREROUTING 1 -p gre -j FIXUP_PRE",
    ]
    assert "queue" not in rules.nft_script  # the nft part has no queue statement in this flavour


def test_no_queue_bypass_fail_closed() -> None:
    for caps in (XTABLES, NFT_QUEUE):
        rules = build_ruleset(policy(), PAT, caps)
        assert "bypass" not in rules.describe()


def test_every_inside_interface_and_port_gets_rules() -> None:
    rules = xtables_commands(policy(inside=("br-in", "br-lab"), pptp_ports=(1723, 1724), queue_num=7), PAT)
    lines = [" ".join(argv) for argv in rules]
    for inside in ("br-in", "br-lab"):
        for port in (1723, 1724):
            assert f"-A FIXUP_FWD -i {inside} -o gw-out -p tcp --dport {port} -j NFQUEUE --queue-num 7" in " | ".join(lines)
            assert f"-A FIXUP_FWD -i gw-out -o {inside} -p tcp --sport {port} -j NFQUEUE --queue-num 7" in " | ".join(lines)
        assert any(line.endswith(f"-i {inside} -o gw-out -p gre -j NFQUEUE --queue-num 7") for line in lines)
    # the jumps come after their chains are filled, so no packet sees a half-built chain
    assert lines.index("iptables-nft -t mangle -I FORWARD 1 -p gre -j FIXUP_FWD") == max(
        i for i, line in enumerate(lines) if "-t mangle" in line
    )


def test_nft_script_notrack_and_snat() -> None:
    script = nft_script(policy(inside=("br-in", "br-lab")), PAT, with_queue=False)
    assert script.startswith("add table ip fixup\ndelete table ip fixup\ntable ip fixup {\n")
    assert "type filter hook prerouting priority -350; policy accept;" in script
    # GRE version 1 only (RFC 2637 section 4.1): bits 13..15 of the GRE header
    assert 'ip protocol gre iif { "br-in", "br-lab" } @th,13,3 1 notrack' in script
    assert 'ip protocol gre iif "gw-out" ip daddr 198.51.100.1 @th,13,3 1 notrack' in script
    assert "type nat hook postrouting priority srcnat; policy accept;" in script
    assert 'iifname { "br-in", "br-lab" } oifname "gw-out" tcp dport { 1723 } snat to 198.51.100.1' in script
    assert "helper" not in script  # the kernel PPTP helper must never be attached


def test_nft_flavour_has_queue_base_chains() -> None:
    rules = build_ruleset(policy(queue_num=5), PAT, NFT_QUEUE)
    assert rules.flavour == "nft" and rules.xtables == ()
    script = rules.nft_script
    assert "type filter hook forward priority mangle; policy accept;" in script
    assert 'iifname { "br-in" } oifname "gw-out" tcp dport { 1723 } queue num 5' in script
    assert 'iifname "gw-out" oifname { "br-in" } tcp sport { 1723 } queue num 5' in script
    assert 'iifname { "br-in" } oifname "gw-out" ip protocol gre queue num 5' in script
    assert "type filter hook prerouting priority raw; policy accept;" in script
    assert 'iifname "gw-out" ip daddr 198.51.100.1 ip protocol gre queue num 5' in script


def test_no_ports_means_no_tcp_rules_but_gre_still_queued() -> None:
    rules = build_ruleset(policy(pptp_ports=()), PAT, XTABLES)
    assert "tcp" not in rules.describe()
    assert "snat to" not in rules.nft_script
    assert "-p gre -j NFQUEUE" in " ".join(xt_lines(rules))


@pytest.mark.parametrize(
    "changes",
    [
        {"inside": ('br"in',)},
        {"outside": "gw out"},
        {"inside": ()},
        {"inside": ("gw-out",)},
        {"gre": "tunnel"},
        {"pptp_ports": (0,)},
        {"queue_num": 70000},
    ],
)
def test_bad_policies_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(SetupError):
        build_ruleset(policy(**changes), PAT, XTABLES)


def test_neither_queue_mechanism_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="NFQUEUE"):
        build_ruleset(policy(), PAT, NOTHING)


class FakeCommands(Commands):
    """Records argv lists; answers "absent" to every probe so remove() has nothing to do."""

    def __init__(self, present: bool = False) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.present = present

    def run(self, argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        line = " ".join(argv)
        self.calls.append(line)
        absent_probe = (" -S " in line or " -C " in line or " list " in line) and not self.present
        return subprocess.CompletedProcess(list(argv), 1 if absent_probe else 0, "", "")


def test_install_removes_leftovers_before_applying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: f"/usr/sbin/{name}")
    fake = FakeCommands()
    rules = build_ruleset(policy(), PAT, XTABLES)
    netfilter.install(rules, fake)
    first_apply = fake.calls.index("nft -f -")
    assert "nft delete table ip fixup" in fake.calls[:first_apply]
    assert fake.calls[first_apply + 1 :] == xt_lines(rules)


def test_remove_deletes_every_duplicate_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: f"/usr/sbin/{name}")

    class Leftovers(FakeCommands):
        """Two jumps to FIXUP_FWD left by crashed runs; chains present until deleted."""

        def __init__(self) -> None:
            super().__init__(present=True)
            self.jumps = 2
            self.deleted: set[str] = set()

        def run(self, argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
            line = " ".join(argv)
            self.calls.append(line)
            rc = 0
            if line == "iptables-nft -t mangle -D FORWARD -j FIXUP_FWD":
                rc = 0 if self.jumps else 1
                self.jumps = max(0, self.jumps - 1)
            elif " -X " in line or line.startswith("nft delete"):
                self.deleted.add(argv[-1])
            elif " -S " in line or " list " in line:
                rc = 1 if argv[-1] in self.deleted else 0
            return subprocess.CompletedProcess(list(argv), rc, "", "")

    fake = Leftovers()
    netfilter.remove(fake)
    assert fake.calls.count("iptables-nft -t mangle -D FORWARD -j FIXUP_FWD") == 3
    assert {"FIXUP_FWD", "FIXUP_PRE", "fixup"} <= fake.deleted


def test_remove_reports_what_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: f"/usr/sbin/{name}")
    with pytest.raises(SetupError, match="still present"):
        netfilter.remove(FakeCommands(present=True))


def test_ensure_forwarding_reads_but_never_writes(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "ip_forward"
    path.write_text("0\n")
    assert netfilter.ensure_forwarding(str(path)) is False
    assert path.read_text() == "0\n"
    path.write_text("1\n")
    assert netfilter.ensure_forwarding(str(path)) is True


def test_kernel_gre_mode_uses_maps_and_queues_only_control() -> None:
    rules = build_ruleset(policy(gre="kernel"), PAT, XTABLES)
    script = rules.nft_script
    assert "map gre_in_addr { typeof ip saddr . @th,48,16 : ip daddr; flags timeout; counter; }" in script
    mark = "meta mark set meta mark | 0x01000000"  # what the permit-pptp rules accept (issue 13)
    assert ("notrack ip daddr set ip saddr . @th,48,16 map @gre_in_addr @th,48,16 set ip saddr . @th,48,16 "
            f"map @gre_in_id {mark} accept") in script
    assert f"ip saddr . ip daddr . @th,48,16 @gre_out ip saddr set {PAT} {mark} accept" in script
    assert "ip protocol != gre accept" in script and "chain gre_notrack" not in script  # one chain per hook
    assert "counter name gre_in_unknown drop" in script and "counter name gre_out_unknown drop" in script
    assert "helper" not in script
    lines = xt_lines(rules)
    assert not any("-p gre" in line for line in lines)
    assert any("--dport 1723" in line for line in lines)
    assert not any("FIXUP_PRE" in line for line in lines)


def test_a_resumed_start_keeps_xtables_chains_that_are_already_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: deleting and re-adding the queue rules would let control segments pass
    uninspected; a restart finds them in place (every ``-C`` answers yes) and replaces only the
    nft table, with the resumed calls' elements in the same transaction."""
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: f"/usr/sbin/{name}")
    rules = build_ruleset(policy(), PAT, XTABLES)
    fake = FakeCommands(present=True)
    monkeypatch.setattr(fake, "run", _listing(fake, {"FIXUP_FWD": "-A FIXUP_FWD a\n-A FIXUP_FWD b\n-A FIXUP_FWD c\n",
                                                     "FIXUP_PRE": "-A FIXUP_PRE a\n"}))
    netfilter.install(rules, fake, resume=True, elements="add element ip fixup gre_out { x }\n")
    assert not any(" -D " in c or " -X " in c or " -A " in c or c.startswith("nft delete") for c in fake.calls)
    absent = FakeCommands()
    netfilter.install(rules, absent, resume=True)
    assert absent.calls[-len(rules.xtables):] == xt_lines(rules)


def _listing(fake: FakeCommands, chains: dict[str, str]):
    """Every ``-C`` finds its rule; ``-S CHAIN`` lists ``chains[CHAIN]``."""
    def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        fake.calls.append(" ".join(argv))
        return subprocess.CompletedProcess(list(argv), 0, chains.get(argv[-1], "") if "-S" in argv else "", "")
    return run


def test_a_reload_of_the_ports_adds_new_rules_before_it_deletes_old_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: f"/usr/sbin/{name}")
    old = build_ruleset(policy(pptp_ports=(1723,)), PAT, XTABLES)
    new = build_ruleset(policy(pptp_ports=(1724,)), PAT, XTABLES)
    fake = FakeCommands(present=True)
    netfilter.update(old, new, fake, elements="add element ip fixup gre_out { x }\n")
    added = [i for i, c in enumerate(fake.calls) if "-A FIXUP_FWD" in c and "1724" in c]
    deleted = [i for i, c in enumerate(fake.calls) if "-D FIXUP_FWD" in c and "1723" in c]
    assert len(added) == 2 and len(deleted) == 2 and max(added) < min(deleted)
    assert fake.calls[0] == "nft -f -" and not any(" -X " in c for c in fake.calls)
