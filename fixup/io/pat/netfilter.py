"""Netfilter rules of the fixup: generated purely, installed and removed through nft / iptables-nft.

fixup owns only what it creates: the nftables table ``ip fixup`` and the xtables chains
``FIXUP_FWD`` (table mangle, jumped to from FORWARD) and ``FIXUP_PRE`` (table raw, jumped to
from PREROUTING).  Installing first removes what an earlier run left behind, so a restart never
duplicates rules; removing tolerates absence.

What the rules do (PPTP, RFC 2637 sections 1.3 and 4):

* GRE is not tracked by conntrack (``notrack`` before conntrack at priority -350): enhanced GRE
  (RFC 2637 section 4.1, GRE version 1) carries no ports and no checksum, so conntrack cannot
  tell calls apart; the user-space tracker rewrites GRE itself.
* TCP control connections (``fixup protocol pptp`` ports) from inside are source-NATed to the
  PAT address by the kernel.  No ``ct helper`` anywhere: the kernel PPTP helper must never be
  attached, the tracker does its job.
* Control segments both ways and GRE from inside are queued in FORWARD (addresses are the real
  inside ones there); GRE arriving on the outside interface for the PAT address is queued in
  raw PREROUTING, before routing, so the tracker can point it at the inside client.  No queue
  bypass: without a listening daemon these packets are dropped (fail closed).
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from fixup.errors import SetupError
from fixup.policy.parser import GRE_MODES

log = logging.getLogger("fixup.netfilter")

NFT_FAMILY = "ip"
NFT_TABLE = "fixup"
NFT_PROBE_TABLE = "fixup_probe"
XT_FORWARD_CHAIN = "FIXUP_FWD"
XT_PREROUTING_CHAIN = "FIXUP_PRE"
XT_PROBE_CHAIN = "FIXUP_PROBE"
PROBE_QUEUE_NUM = 65000
IPTABLES = "iptables-nft"
NFT = "nft"

# xtables chain -> (table, built-in chain that jumps to it)
# every form of jump an earlier (or this) version installed, for removal
XT_JUMP_MATCHES: tuple[tuple[str, ...], ...] = ((), ("-p", "tcp"), ("-p", "gre"))
XT_JUMPS: dict[str, tuple[str, str]] = {
    XT_FORWARD_CHAIN: ("mangle", "FORWARD"),
    XT_PREROUTING_CHAIN: ("raw", "PREROUTING"),
}

PERMIT_MARK = 0x01000000  # on GRE fixup translated: what the permit-pptp rules accept (fixup.io.pat.permit)
_SET_MARK = f"meta mark set meta mark | 0x{PERMIT_MARK:08x}"
KERNEL_GRE = ("kernel", "ebpf")  # the nftables maps translate GRE (behind the tc program, in ebpf)
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_GRE_VERSION_1 = "@th,13,3 1"  # GRE header bits 13..15: Version (RFC 2637 section 4.1) == 1
_GRE_CALL_ID = "@th,48,16"  # GRE header bytes 6-7: Call ID, the low half of the Key (RFC 2637 section 4.1)


class QueuePolicy(Protocol):
    """What the rule generator needs from :class:`fixup.policy.loader.Policy`."""

    inside: tuple[str, ...]
    outside: str
    pptp_ports: tuple[int, ...]
    gre: str
    queue_num: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What this host's netfilter can do, found by :func:`probe_capabilities`."""

    nft_binary: bool
    iptables_nft_binary: bool
    nft_queue: bool
    xt_nfqueue: bool

    @property
    def queue_flavour(self) -> str:
        """``"nft"`` when the nftables ``queue`` statement works, else ``"xtables"``."""
        if self.nft_queue:
            return "nft"
        if self.xt_nfqueue:
            return "xtables"
        raise SetupError(
            "neither the nftables 'queue' statement nor the xtables NFQUEUE target works "
            "(kernel needs CONFIG_NFT_QUEUE or CONFIG_NETFILTER_XT_TARGET_NFQUEUE, plus nft or iptables-nft)"
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything :func:`install` applies: an nft script and iptables-nft argv lists (in order)."""

    flavour: str
    nft_script: str
    xtables: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        """The rules as one text, for ``--debug`` logs and ``fixup check``."""
        lines = [self.nft_script.rstrip("\n")]
        lines += [" ".join(argv) for argv in self.xtables]
        return "\n".join(lines) + "\n"


class Commands:
    """Runs nft / iptables-nft, logging every command at debug.

    ``prefix`` is prepended to every argv (e.g. ``("ip", "netns", "exec", "ns1")`` in tests)."""

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = tuple(prefix)

    def run(self, argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        full = [*self.prefix, *argv]
        log.debug("run: %s%s", " ".join(full), " <<script" if stdin is not None else "")
        if stdin is not None:
            log.debug("script:\n%s", stdin.rstrip("\n"))
        try:
            done = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SetupError(f"cannot run {' '.join(full)}: {err}") from err
        if done.returncode != 0:
            log.debug("exit %d: %s", done.returncode, done.stderr.strip())
            if check:
                raise SetupError(f"{' '.join(argv)} failed: {_first_line(done.stderr) or f'exit {done.returncode}'}")
        return done

    def ok(self, argv: Sequence[str], *, stdin: str | None = None) -> bool:
        """Run and return whether it exited 0 (failures are expected here, not errors)."""
        return self.run(argv, stdin=stdin, check=False).returncode == 0


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# --- capabilities ------------------------------------------------------------------------------


def probe_capabilities(commands: Commands | None = None) -> Capabilities:
    """Find out which queueing works here by adding a rule to a throwaway chain and deleting it.

    Raises :class:`SetupError` when neither the nft ``queue`` statement nor xtables NFQUEUE works."""
    commands = commands or Commands()
    has_nft = shutil.which(NFT) is not None
    has_ipt = shutil.which(IPTABLES) is not None
    caps = Capabilities(
        nft_binary=has_nft,
        iptables_nft_binary=has_ipt,
        nft_queue=has_nft and _probe_nft_queue(commands),
        xt_nfqueue=has_ipt and _probe_xt_nfqueue(commands),
    )
    log.debug("capabilities: %s", caps)
    if not has_nft:
        raise SetupError("nft not found: fixup needs nftables (nft) for its NAT and notrack rules")
    caps.queue_flavour  # raises SetupError when nothing queues
    return caps


def _probe_nft_queue(commands: Commands) -> bool:
    """A ``queue`` rule in a regular (unhooked) chain of a throwaway table: no packet ever sees it."""
    script = (
        f"table {NFT_FAMILY} {NFT_PROBE_TABLE} {{\n"
        f"  chain probe {{\n    meta l4proto 253 queue num {PROBE_QUEUE_NUM}\n  }}\n}}\n"
    )
    works = commands.ok([NFT, "-f", "-"], stdin=script)
    commands.run([NFT, "delete", "table", NFT_FAMILY, NFT_PROBE_TABLE], check=False)
    return works


def _probe_xt_nfqueue(commands: Commands) -> bool:
    """An NFQUEUE rule in a throwaway custom chain (nothing jumps to it) of table mangle."""
    ipt = [IPTABLES, "-t", "mangle"]
    commands.run([*ipt, "-F", XT_PROBE_CHAIN], check=False)
    commands.run([*ipt, "-X", XT_PROBE_CHAIN], check=False)
    if not commands.ok([*ipt, "-N", XT_PROBE_CHAIN]):
        return False
    works = commands.ok([*ipt, "-A", XT_PROBE_CHAIN, "-p", "253", "-j", "NFQUEUE", "--queue-num", str(PROBE_QUEUE_NUM)])
    commands.run([*ipt, "-F", XT_PROBE_CHAIN], check=False)
    commands.run([*ipt, "-X", XT_PROBE_CHAIN], check=False)
    return works


# --- pure rule generation ----------------------------------------------------------------------


def build_ruleset(policy: QueuePolicy, pat_address: IPv4Address, capabilities: Capabilities) -> RuleSet:
    """The complete rule set for ``policy`` (pure: no I/O)."""
    _check_names(policy)
    flavour = capabilities.queue_flavour
    script = nft_script(policy, pat_address, with_queue=(flavour == "nft"))
    xt = xtables_commands(policy, pat_address) if flavour == "xtables" else ()
    return RuleSet(flavour=flavour, nft_script=script, xtables=xt)


def _check_names(policy: QueuePolicy) -> None:
    for name in (*policy.inside, policy.outside):
        if not _IFNAME.match(name):
            raise SetupError(f"interface name {name!r} is not a valid Linux interface name")
    if not policy.inside:
        raise SetupError("no inside interface")
    if policy.outside in policy.inside:
        raise SetupError(f"interface {policy.outside} is both inside and outside")
    if policy.gre not in GRE_MODES:
        raise SetupError(f"gre mode {policy.gre!r} is unknown; use one of {', '.join(GRE_MODES)}")
    for port in policy.pptp_ports:
        if not 1 <= int(port) <= 65535:
            raise SetupError(f"PPTP control port {port} is out of range")
    if not 0 <= int(policy.queue_num) <= 65535:
        raise SetupError(f"queue number {policy.queue_num} is out of range")


def _nft_set(items: Sequence[object], *, quote: bool = False) -> str:
    words = [f'"{item}"' if quote else str(item) for item in items]
    return "{ " + ", ".join(words) + " }"


def nft_script(policy: QueuePolicy, pat_address: IPv4Address, *, with_queue: bool) -> str:
    """The ``nft -f`` script for table ``ip fixup``.

    It starts by creating and deleting the table so that loading it replaces an earlier copy
    atomically.  Chains are named ``gre_notrack`` / ``pptp_snat`` (``notrack`` and ``snat`` are
    nft keywords)."""
    inside = _nft_set(policy.inside, quote=True)
    outside = f'"{policy.outside}"'
    lines = [
        f"add table {NFT_FAMILY} {NFT_TABLE}",
        f"delete table {NFT_FAMILY} {NFT_TABLE}",
        f"table {NFT_FAMILY} {NFT_TABLE} {{",
    ]
    if policy.gre in KERNEL_GRE:
        lines += _nft_kernel_gre(policy, pat_address)  # notrack included, one chain per hook
    else:
        lines += [
            "  chain gre_notrack {",
            "    type filter hook prerouting priority -350; policy accept;",
            f"    ip protocol gre iif {_iifs(policy)} {_GRE_VERSION_1} notrack {_SET_MARK}",
            f"    ip protocol gre iif {outside} ip daddr {pat_address} {_GRE_VERSION_1} notrack {_SET_MARK}",
            "  }",
        ]
    lines += [
        "  chain pptp_snat {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    if policy.pptp_ports:  # no ports = "no fixup protocol pptp": nothing to SNAT or inspect
        ports = _nft_set(sorted(set(policy.pptp_ports)))
        lines.append(f"    iifname {inside} oifname {outside} tcp dport {ports} snat to {pat_address}")
    lines.append("  }")
    if with_queue:
        lines += _nft_queue_chains(policy, pat_address)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nft_queue_chains(policy: QueuePolicy, pat_address: IPv4Address) -> list[str]:
    """The queue rules as nft base chains, at the priorities of the xtables tables they replace."""
    inside = _nft_set(policy.inside, quote=True)
    outside = f'"{policy.outside}"'
    queue = f"queue num {policy.queue_num}"
    lines = ["  chain forward_queue {", "    type filter hook forward priority mangle; policy accept;"]
    if policy.pptp_ports:
        ports = _nft_set(sorted(set(policy.pptp_ports)))
        lines.append(f"    iifname {inside} oifname {outside} tcp dport {ports} {queue}")
        lines.append(f"    iifname {outside} oifname {inside} tcp sport {ports} {queue}")
    if policy.gre != "queue":
        return lines + ["  }"]
    return lines + [
        f"    iifname {inside} oifname {outside} ip protocol gre {queue}",
        "  }",
        "  chain prerouting_queue {",
        "    type filter hook prerouting priority raw; policy accept;",
        f"    iifname {outside} ip daddr {pat_address} ip protocol gre {queue}",
        "  }",
    ]


def _iifs(policy: QueuePolicy) -> str:
    """The inside interfaces for ``iif``: matched by index, cheaper per packet than by name
    (the interfaces must exist when the rules are loaded; the daemon checks that first)."""
    return _nft_set(policy.inside, quote=True)


def _nft_kernel_gre(policy: QueuePolicy, pat_address: IPv4Address) -> list[str]:
    """``gre: kernel``: GRE of established calls translated statelessly by nftables maps that the
    daemon fills from the tracker (see :mod:`fixup.io.pat.gre_maps`); GRE of no call counted, dropped.

    Inbound, before routing and conntrack: notrack, destination := client, Call ID := original
    (both looked up by server address and translated Call ID, so the address is rewritten first).
    Outbound: notrack before routing, then in FORWARD source := PAT when (client, server, server
    Call ID) is a call.  Set ``local_gre``: (client, our Call ID) of calls this host terminates
    itself, delivered locally.  Every rule tests the protocol first: other traffic leaves at once."""
    outside = f'"{policy.outside}"'
    gre = f"ip protocol gre {_GRE_VERSION_1}"
    gre_in = f"ip protocol gre iif {outside} ip daddr {pat_address} {_GRE_VERSION_1}"
    in_key = f"ip saddr . {_GRE_CALL_ID}"
    return [
        f"  map gre_in_addr {{ typeof {in_key} : ip daddr; flags timeout; counter; }}",
        f"  map gre_in_id {{ typeof {in_key} : {_GRE_CALL_ID}; flags timeout; }}",
        f"  set gre_out {{ typeof ip saddr . ip daddr . {_GRE_CALL_ID}; flags timeout; counter; }}",
        f"  set local_gre {{ typeof {in_key}; }}",
        "  counter gre_in_unknown { }",
        "  counter gre_out_unknown { }",
        "  chain gre_in {",
        "    type filter hook prerouting priority raw; policy accept;",
        f"    {gre_in} notrack ip daddr set {in_key} map @gre_in_addr {_GRE_CALL_ID} set {in_key} map @gre_in_id "
        f"{_SET_MARK} accept",
        "    ip protocol != gre accept",
        f"    {gre_in} {in_key} @local_gre accept",
        f"    {gre_in} counter name gre_in_unknown drop",
        f"    iif {_iifs(policy)} {gre} notrack",
        "  }",
        "  chain gre_out {",
        "    type filter hook forward priority mangle; policy accept;",
        f"    ip protocol gre oif {outside} iif {_iifs(policy)} {_GRE_VERSION_1} "
        f"ip saddr . ip daddr . {_GRE_CALL_ID} @gre_out ip saddr set {pat_address} {_SET_MARK} accept",
        # any version: forwarded GRE that is not a tracked call (GRE v0 too) never leaves un-NATed
        f"    ip protocol gre oif {outside} iif {_iifs(policy)} counter name gre_out_unknown drop",
        "  }",
    ]


def xtables_commands(policy: QueuePolicy, pat_address: IPv4Address) -> tuple[tuple[str, ...], ...]:
    """iptables-nft argv lists: fill the custom chains, then jump to them (position 1).

    With no PPTP ports only GRE is queued (and then dropped by the tracker: nothing is tracked)."""
    queue = ("-j", "NFQUEUE", "--queue-num", str(policy.queue_num))
    out = policy.outside
    fwd = (IPTABLES, "-t", "mangle")
    pre = (IPTABLES, "-t", "raw")
    cmds: list[tuple[str, ...]] = [(*fwd, "-N", XT_FORWARD_CHAIN)]
    for inside in policy.inside:
        for port in sorted(set(policy.pptp_ports)):
            cmds.append((*fwd, "-A", XT_FORWARD_CHAIN, "-i", inside, "-o", out, "-p", "tcp", "--dport", str(port), *queue))
            cmds.append((*fwd, "-A", XT_FORWARD_CHAIN, "-i", out, "-o", inside, "-p", "tcp", "--sport", str(port), *queue))
        if policy.gre == "queue":
            cmds.append((*fwd, "-A", XT_FORWARD_CHAIN, "-i", inside, "-o", out, "-p", "gre", *queue))
    protocols = (("tcp",) if policy.pptp_ports else ()) + (("gre",) if policy.gre == "queue" else ())
    for proto in protocols:  # other traffic never enters the chain
        cmds.append((*fwd, "-I", "FORWARD", "1", "-p", proto, "-j", XT_FORWARD_CHAIN))
    if policy.gre == "queue":
        cmds.append((*pre, "-N", XT_PREROUTING_CHAIN))
        cmds.append((*pre, "-A", XT_PREROUTING_CHAIN, "-i", out, "-d", str(pat_address), "-p", "gre", *queue))
        cmds.append((*pre, "-I", "PREROUTING", "1", "-p", "gre", "-j", XT_PREROUTING_CHAIN))
    return tuple(cmds)


# --- install / remove --------------------------------------------------------------------------


def install(ruleset: RuleSet, commands: Commands | None = None, *, resume: bool = False,
            elements: str = "") -> None:
    """Apply ``ruleset``, replacing whatever an earlier run left.  On failure, remove everything.

    ``resume`` (a restart that keeps the calls, issue 12): the table is replaced in one nft
    transaction, with ``elements`` (the restored calls' GRE translations) in it, so GRE never
    meets a table without them; xtables chains that are already exactly these rules stay, since
    deleting and re-adding them would let control segments pass uninspected for a moment."""
    commands = commands or Commands()
    xt_in_place = resume and bool(ruleset.xtables) and xtables_in_place(ruleset, commands)
    if not resume:
        remove(commands)
    elif not xt_in_place:
        _remove_xtables(commands)
    try:
        commands.run([NFT, "-f", "-"], stdin=ruleset.nft_script + elements)
        if not xt_in_place:
            for argv in ruleset.xtables:
                commands.run(argv)
    except SetupError:
        remove(commands)
        raise
    log.debug("rules installed (%s queueing%s)", ruleset.flavour, ", xtables chains kept" if xt_in_place else "")


def update(old: RuleSet, new: RuleSet, commands: Commands | None = None, *, elements: str = "") -> None:
    """A reload that changes the rules (``fixup.pptp.ports``): the table replaced in one
    transaction with ``elements`` (every live call's translations) in it; xtables rules of
    ``new`` that ``old`` lacks added before those only ``old`` has are deleted, so a control
    port that stays is never left uninspected."""
    commands = commands or Commands()
    commands.run([NFT, "-f", "-"], stdin=new.nft_script + elements)
    kept = set(new.xtables)
    for argv in new.xtables:
        if argv in old.xtables or argv[3] == "-N" and _xt_chain_present(commands, argv[2], argv[4]):
            continue
        commands.run(argv)
    for argv in reversed(old.xtables):
        if argv in kept or argv[3] == "-N":
            continue
        table, chain, spec = _rule_spec(argv)
        commands.run([IPTABLES, "-t", table, "-D", chain, *spec], check=False)
    log.debug("rules updated (%d xtables rules)", len(new.xtables))


def xtables_in_place(ruleset: RuleSet, commands: Commands) -> bool:
    """Whether every xtables rule of ``ruleset`` is present (``iptables -C``) and our chains hold
    no other rule."""
    expected: dict[tuple[str, str], int] = {}
    for argv in ruleset.xtables:
        if argv[3] == "-N":
            continue
        table, chain, spec = _rule_spec(argv)
        if argv[3] == "-A":
            expected[(table, chain)] = expected.get((table, chain), 0) + 1
        if not commands.ok([IPTABLES, "-t", table, "-C", chain, *spec]):
            return False
    for (table, chain), count in expected.items():
        listing = commands.run([IPTABLES, "-t", table, "-S", chain], check=False).stdout
        if sum(1 for line in listing.splitlines() if line.startswith("-A ")) != count:
            return False
    return True


def _rule_spec(argv: Sequence[str]) -> tuple[str, str, list[str]]:
    """(table, chain, rule) of an ``-A`` / ``-I CHAIN POS`` argv of :func:`xtables_commands`, for
    ``-C`` and ``-D``."""
    rest = list(argv[5:])
    return argv[2], argv[4], rest[1:] if argv[3] == "-I" else rest


def remove(commands: Commands | None = None) -> None:
    """Delete fixup's jumps, chains and table; absent pieces are fine.  SetupError if something stays."""
    commands = commands or Commands()
    _remove_xtables(commands)
    if shutil.which(NFT) is not None:
        commands.run([NFT, "delete", "table", NFT_FAMILY, NFT_TABLE], check=False)
    left = leftovers(commands)
    if left:
        raise SetupError(f"could not remove fixup rules: {', '.join(left)} still present")


def _remove_xtables(commands: Commands) -> None:
    if shutil.which(IPTABLES) is not None:
        for chain, (table, builtin) in XT_JUMPS.items():
            _remove_xt_chain(commands, table, builtin, chain)


def _xt_chain_present(commands: Commands, table: str, chain: str) -> bool:
    """Asked both ways: iptables-nft refuses (``incompatible``) chains that nft has altered."""
    if shutil.which(NFT) is not None and commands.ok([NFT, "list", "chain", NFT_FAMILY, table, chain]):
        return True
    return commands.ok([IPTABLES, "-t", table, "-S", chain])


def _remove_xt_chain(commands: Commands, table: str, builtin: str, chain: str) -> None:
    ipt = [IPTABLES, "-t", table]
    if not _xt_chain_present(commands, table, chain):
        return
    for match in XT_JUMP_MATCHES:
        for _ in range(64):  # every duplicate jump an earlier crash may have left
            if not commands.ok([*ipt, "-D", builtin, *match, "-j", chain]):
                break
    commands.run([*ipt, "-F", chain], check=False)
    commands.run([*ipt, "-X", chain], check=False)
    if shutil.which(NFT) is not None and _xt_chain_present(commands, table, chain):
        _nft_remove_chain(commands, table, builtin, chain)


_JUMP_HANDLE = re.compile(r"\bjump (\S+) # handle (\d+)")


def _nft_remove_chain(commands: Commands, table: str, builtin: str, chain: str) -> None:
    """Fallback through nft when iptables-nft refuses a chain it finds ``incompatible``."""
    listing = commands.run([NFT, "-a", "list", "chain", NFT_FAMILY, table, builtin], check=False).stdout
    for target, handle in _JUMP_HANDLE.findall(listing):
        if target.strip('"') == chain:
            commands.run([NFT, "delete", "rule", NFT_FAMILY, table, builtin, "handle", handle], check=False)
    commands.run([NFT, "flush", "chain", NFT_FAMILY, table, chain], check=False)
    commands.run([NFT, "delete", "chain", NFT_FAMILY, table, chain], check=False)


def leftovers(commands: Commands | None = None) -> list[str]:
    """What of fixup's rules is present now (empty when nothing)."""
    commands = commands or Commands()
    found: list[str] = []
    if shutil.which(NFT) is not None and commands.ok([NFT, "list", "table", NFT_FAMILY, NFT_TABLE]):
        found.append(f"nft table {NFT_FAMILY} {NFT_TABLE}")
    if shutil.which(IPTABLES) is not None:
        for chain, (table, _builtin) in XT_JUMPS.items():
            if _xt_chain_present(commands, table, chain):
                found.append(f"iptables-nft chain {table} {chain}")
    return found


# --- sysctl ------------------------------------------------------------------------------------


def ensure_forwarding(path: str = "/proc/sys/net/ipv4/ip_forward") -> bool:
    """Warn (never change it) when IPv4 forwarding is off; return whether it is on."""
    try:
        with open(path, encoding="ascii") as handle:
            on = handle.read().strip() == "1"
    except OSError as err:
        log.warning("cannot read %s: %s", path, err)
        return False
    if not on:
        log.warning("net.ipv4.ip_forward is 0: this host does not forward, PPTP clients will not get through")
    return on
