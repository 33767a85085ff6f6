"""``fixup.pptp.permit`` (PIX ``sysopt connection permit-pptp``, issue 13): the GRE of tracked
calls passes whatever the host's own forward chains say.

fixup marks GRE it has translated (:data:`MARK`, set by its own rules next to the translation;
GRE of no call is dropped before it could be marked).  A router's firewall drops forwarded
traffic by default and accepts return traffic by conntrack state -- and GRE is ``notrack`` here,
so an accept in fixup's own table cannot help: an accept ends one base chain, a drop in another
table at the same hook still drops.  So, as Docker and Tailscale do, one rule goes at the head of
every forward base chain of the host (nftables tables of family ``ip`` and ``inet``, and the
iptables-nft ``FORWARD`` chains through iptables-nft itself), matching only marked GRE, with a
comment to find it again; :func:`remove` deletes exactly those.  :func:`ensure` runs again every
few seconds, so a firewall reloaded under fixup (``nft -f``, firewalld, ufw) gets its rule back.
The eBPF path needs none of it for what it redirects (it never reaches a forward chain); what it
passes up the stack does.  The control connection stays subject to the host's firewall.
"""
from __future__ import annotations

import json
import logging
import shutil

from fixup.errors import SetupError
from fixup.io.logs import RateLimitedLog
from fixup.io.pat.netfilter import IPTABLES, NFT, NFT_FAMILY, NFT_TABLE, PERMIT_MARK, Commands

log = logging.getLogger("fixup.netfilter")
_errors = RateLimitedLog(log)  # a chain that refuses the rule is retried every 3 s: one line per 10 s

MARK = PERMIT_MARK
COMMENT = "fixup permit-pptp"
XT_TABLES = ("filter", "mangle", "raw", "security")  # iptables-nft's own tables (family ip)
# where fixup's own xtables jumps live (mangle FORWARD queues the control connections and, with
# gre: queue, outbound GRE): an accept before them would skip the queue; an accept there is no
# use anyway, a filter chain runs after them
OWN_XT_TABLES = (("ip", "mangle"), ("ip", "raw"))
_NFT_MATCH = f"meta mark & 0x{MARK:08x} == 0x{MARK:08x} ip protocol gre"
_XT_MATCH = ("-p", "gre", "-m", "mark", "--mark", f"0x{MARK:x}/0x{MARK:x}", "-m", "comment", "--comment", COMMENT)

Chain = tuple[str, str, str]  # family, table, chain


def forward_chains(commands: Commands) -> list[Chain]:
    """The host's forward base chains, fixup's own table left out."""
    if shutil.which(NFT) is None:
        return []
    done = commands.run([NFT, "-j", "list", "chains"], check=False)
    if done.returncode != 0:
        return []
    try:
        items = json.loads(done.stdout).get("nftables", [])
    except ValueError:
        return []
    chains = []
    for item in items:
        chain = item.get("chain") if isinstance(item, dict) else None
        if not chain or chain.get("hook") != "forward" or chain.get("family") not in ("ip", "inet"):
            continue
        if (chain["family"], chain["table"]) in ((NFT_FAMILY, NFT_TABLE), *OWN_XT_TABLES):
            continue
        chains.append((chain["family"], chain["table"], chain["name"]))
    return chains


def _is_xtables(chain: Chain) -> bool:
    family, table, name = chain
    return family == "ip" and table in XT_TABLES and name.isupper()


def ensure(commands: Commands | None = None) -> list[Chain]:
    """Our rule at the head of every forward base chain that lacks it; the chains it was added to."""
    commands = commands or Commands()
    added = []
    for chain in forward_chains(commands):
        if _present(commands, chain):
            continue
        try:
            _insert(commands, chain)
        except SetupError as err:
            _errors.error("fixup: cannot add the permit-pptp rule to %s %s %s: %s", *chain, err)
            continue
        added.append(chain)
    if added:
        log.info("fixup: permit-pptp: tracked GRE accepted first in %s",
                 ", ".join(f"{f} {t} {c}" for f, t, c in added))
    return added


def _present(commands: Commands, chain: Chain) -> bool:
    family, table, name = chain
    if _is_xtables(chain) and shutil.which(IPTABLES) is not None:
        return commands.ok([IPTABLES, "-t", table, "-C", name, *_XT_MATCH, "-j", "ACCEPT"])
    listing = commands.run([NFT, "list", "chain", family, table, name], check=False).stdout
    return f'comment "{COMMENT}"' in listing


def _insert(commands: Commands, chain: Chain) -> None:
    family, table, name = chain
    if _is_xtables(chain) and shutil.which(IPTABLES) is not None:
        commands.run([IPTABLES, "-t", table, "-I", name, "1", *_XT_MATCH, "-j", "ACCEPT"])
        return
    commands.run([NFT, "insert", "rule", family, table, name, *_NFT_MATCH.split(), "counter", "accept",
                  "comment", f'"{COMMENT}"'])


def remove(commands: Commands | None = None) -> None:
    """Every rule :func:`ensure` added, wherever it still is."""
    commands = commands or Commands()
    for chain in forward_chains(commands):
        family, table, name = chain
        if _is_xtables(chain) and shutil.which(IPTABLES) is not None:
            for _ in range(64):  # duplicates a crash may have left
                if not commands.ok([IPTABLES, "-t", table, "-D", name, *_XT_MATCH, "-j", "ACCEPT"]):
                    break
            continue
        listing = commands.run([NFT, "-a", "list", "chain", family, table, name], check=False).stdout
        for line in listing.splitlines():
            if f'comment "{COMMENT}"' in line and "# handle " in line:
                handle = line.rsplit("# handle ", 1)[1].strip()
                commands.run([NFT, "delete", "rule", family, table, name, "handle", handle], check=False)


def left(commands: Commands | None = None) -> list[str]:
    """Our rules still present (for the leftovers check)."""
    commands = commands or Commands()
    return [f"permit-pptp rule in {f} {t} {c}" for f, t, c in forward_chains(commands) if _present(commands, (f, t, c))]


def hint() -> str:
    """What ``fixup check`` prints with ``permit: false``: the one rule the operator adds."""
    return (f"nft insert rule inet filter forward {_NFT_MATCH} accept   "
            f"# or: iptables -I FORWARD 1 -p gre -m mark --mark 0x{MARK:x}/0x{MARK:x} -j ACCEPT")
