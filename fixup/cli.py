"""The ``fixup`` command line.

``fixup run --policy FILE [--debug]``, ``fixup check --policy FILE``, ``fixup show calls|counters
[--json]``, ``fixup clear calls [--conn ID]``, ``fixup reload``, ``fixup stop``, ``fixup debug pptp|off``, ``fixup lab ...``,
``fixup bench ...``.
Errors are one line on stderr; exit status 2 for a bad policy, 1 for anything else.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fixup import __version__
from fixup.errors import FixupError, PolicyError
from fixup.io.control import DEFAULT_SOCKET

if TYPE_CHECKING:
    from fixup.policy.loader import Policy

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_POLICY = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fixup", description="PPTP fixup for Linux edge routers (RFC 2637).")
    parser.add_argument("--version", action="version", version=f"fixup {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sock = argparse.ArgumentParser(add_help=False)
    sock.add_argument("--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--policy", required=True, metavar="FILE")
    run.add_argument("--debug", action="store_true", help="log every packet decision and netfilter command")
    check = sub.add_parser("check", help="validate a policy and print a summary")
    check.add_argument("--policy", required=True, metavar="FILE")

    show = sub.add_parser("show", parents=[sock], help="show calls or counters of the running daemon")
    show.add_argument("what", choices=["calls", "counters", "vpdn", "aaa-server"])
    show.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")
    clear = sub.add_parser("clear", parents=[sock],
                           help="forget control connections and their calls (calls), or end local PPTP tunnels "
                                "(vpdn tunnel ID|all)")
    clear.add_argument("what", choices=["calls", "vpdn"])
    clear.add_argument("target", nargs="*", metavar="tunnel ID|all", help="for vpdn: 'tunnel ID' or 'all'")
    clear.add_argument("--conn", type=int, default=None, metavar="ID", help="only this control connection")
    sub.add_parser("reload", parents=[sock], help="make the running daemon re-read its policy file (like SIGHUP)")
    stop = sub.add_parser("stop", parents=[sock],
                          help="stop the daemon and remove everything it set up: rules, GRE translations, saved calls "
                               "(after SIGTERM or a crash: what it left)")
    stop.add_argument("--policy", metavar="FILE", help="read runtime.state_dir from this policy when no daemon runs")
    debug = sub.add_parser("debug", parents=[sock], help="switch the daemon's debug logging")
    debug.add_argument("what", choices=["pptp", "off"])
    sub.add_parser("lab", help="lab scenarios (arguments passed through)", add_help=False)
    sub.add_parser("bench", help="benchmark against plain routing and the kernel helper (arguments passed through)",
                   add_help=False)
    sub.add_parser("fuzz", help="mutated input into every pure entry point (arguments passed through)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fixup`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["lab"]:
        return _lab(args_list[1:])
    if args_list[:1] == ["bench"]:
        return _bench(args_list[1:])
    if args_list[:1] == ["fuzz"]:
        from fixup.fuzz import main as fuzz_main

        return fuzz_main(args_list[1:])
    args = _parser().parse_args(args_list)
    try:
        return _dispatch(args)
    except PolicyError as err:
        _error(str(err))
        return EXIT_POLICY
    except FixupError as err:
        _error(f"fixup: {err}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


def _error(text: str) -> None:
    print(" ".join(text.split()), file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args.policy, args.debug)
    if args.command == "check":
        return _check(args.policy)
    if args.command == "show":
        return _show(args.what, args.socket, args.json)
    if args.command == "clear":
        if args.what == "vpdn":
            return _clear_vpdn(args.socket, args.target)
        return _clear(args.socket, args.conn)
    if args.command == "reload":
        return _reload(args.socket)
    if args.command == "stop":
        return _stop(args.socket, args.policy)
    return _debug(args.socket, args.what)


def _load(path: str) -> Policy:
    from fixup.policy.loader import load_policy

    try:
        policy = load_policy(path)
    except OSError as err:
        raise PolicyError(err.strerror or str(err), path=path) from err
    _warn_if_readable(path, policy)
    return policy


def _warn_if_readable(path: str, policy: Policy) -> None:
    """A policy with passwords or shared secrets that other users can read: say so (once, on stderr)."""
    import os
    import stat

    from fixup.policy.loader import secrets_of

    keys = secrets_of(policy)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if keys and mode & (stat.S_IRGRP | stat.S_IROTH):
        _error(f"fixup: warning: {path} holds secrets ({', '.join(keys)}) and is readable by other users "
               f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")


def _run(path: str, debug: bool) -> int:
    policy = _load(path)
    level = logging.DEBUG if debug else getattr(logging, str(policy.log_level).upper(), logging.INFO)
    logging.basicConfig(format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("fixup").setLevel(level)
    from fixup.io.daemon import run

    return run(policy, debug=debug)


def policy_summary(policy: Policy) -> str:
    """What ``fixup check`` prints for a valid policy."""
    pat = str(policy.pat_address) if policy.pat_address is not None else f"primary address of {policy.outside}"
    t = policy.timeouts
    lines = [
        f"policy {policy.source}: OK",
        f"  inside        {', '.join(policy.inside)}",
        f"  outside       {policy.outside}",
        f"  PAT address   {pat}",
        f"  PPTP ports    {', '.join(str(p) for p in policy.pptp_ports) or 'none (no fixup protocol pptp)'}",
        f"  GRE           {policy.gre} " + {"queue": f"(NFQUEUE {policy.queue_num})", "kernel": "(nftables maps)",
                                          "ebpf": "(tc eBPF program, nftables maps behind it)"}[policy.gre],
        f"  control queue NFQUEUE {policy.queue_num}",
        "  permit        " + ("tracked GRE accepted first in the host's forward chains (sysopt connection permit-pptp)"
                              if policy.permit else "off: the host's firewall decides about tracked GRE"),
        f"  timeouts      control idle {t.control_idle:g} s, call idle {t.call_idle:g} s, "
        f"call setup {t.call_setup:g} s, clearing {t.clearing:g} s, GRE lease {t.gre_lease:g} s",
        f"  limits        {policy.limits.calls_per_connection} calls per connection, "
        f"{policy.limits.calls_per_client} calls per client and server, "
        f"{policy.limits.connections_per_client} connections per client, {policy.limits.connections} in all",
        f"  control       {policy.control_socket}",
        f"  saved calls   {policy.state_dir}/state.db (a restart resumes them)",
        f"  log level     {policy.log_level}",
        "  metrics       " + (f"http://127.0.0.1:{policy.metrics_port}/metrics" if policy.metrics_port else "off"),
    ]
    if not policy.permit:
        from fixup.io.pat.permit import hint

        lines.append(f"  add this rule to the host's firewall for the GRE of tracked calls: {hint()}")
    term = policy.terminate
    if term is not None:
        e = term.encryption
        lines += [
            f"  vpdn          accept dialin pptp on {term.listen_address or term.listen_interface}",
            f"  vpdn ppp      authentication {' '.join(term.authentication)}; encryption mppe {e.mppe}"
            f"{' required' if e.required else ''}",
            f"  vpdn pool     {term.pool[0]}-{term.pool[1]} ({term.pool_size} addresses), "
            f"dns {' '.join(map(str, term.dns)) or 'none'}, wins {' '.join(map(str, term.wins)) or 'none'}",
            f"  vpdn users    {len(term.users)} local, max sessions {term.max_sessions}",
        ]
        if term.aaa.authentication is not None:
            lines.append(f"  vpdn aaa      client authentication aaa {term.aaa.authentication.name}")
        if term.aaa.accounting is not None:
            interim = term.aaa.interim_interval
            lines.append(f"  vpdn aaa      client accounting {term.aaa.accounting.name}, interim updates "
                         + (f"every {interim:g} s" if interim else "when the server asks (Acct-Interim-Interval)"))
    for group in policy.aaa.values():
        hosts = ", ".join(f"{h.label} timeout {h.timeout:g} s retries {h.retries}" for h in group.hosts)
        lines.append(f"  aaa-server    {group.name} protocol {group.protocol}: {hosts}")
    return "\n".join(lines)


def _check(path: str) -> int:
    print(policy_summary(_load(path)))
    return EXIT_OK


def _request(socket_path: str, obj: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    from fixup.io.control import request

    return request(socket_path, obj, timeout)


def _show(what: str, socket_path: str, as_json: bool) -> int:
    from fixup.io.pat import show

    if what in ("vpdn", "aaa-server"):
        from fixup.io.vpdn.show import format_aaa, format_vpdn

        snapshot = _request(socket_path, {"cmd": "show-vpdn"})
        if what == "aaa-server":
            snapshot = snapshot.get("aaa") or {}
        text = format_vpdn(snapshot) if what == "vpdn" else format_aaa(snapshot)
        print(json.dumps(snapshot, indent=2, sort_keys=True) if as_json else text, end="\n" if as_json else "")
        return EXIT_OK
    snapshot = _request(socket_path, {"cmd": "show-calls"})
    if as_json:
        print(json.dumps(snapshot, indent=2, sort_keys=True))
    elif what == "calls":
        print(show.format_snapshot(snapshot), end="")
    else:
        print(show.format_counters(snapshot), end="")
    return EXIT_OK


def _clear(socket_path: str, conn: int | None) -> int:
    result = _request(socket_path, {"cmd": "clear-calls", "conn": conn})
    target = "all control connections" if conn is None else f"control connection {conn}"
    print(f"cleared {target}: {result.get('released', 0)} call(s) released")
    return EXIT_OK


def _clear_vpdn(socket_path: str, target: list[str]) -> int:
    """``clear vpdn tunnel ID`` / ``clear vpdn all`` (PIX 6.x ``vpdn tunnel`` clearing)."""
    if target == ["all"]:
        tunnel = None
    elif len(target) == 2 and target[0] == "tunnel" and target[1].isdigit():
        tunnel = int(target[1])
    else:
        raise FixupError("usage: fixup clear vpdn tunnel ID | fixup clear vpdn all")
    result = _request(socket_path, {"cmd": "clear-vpdn", "tunnel": tunnel})
    print(f"cleared {'all tunnels' if tunnel is None else f'tunnel {tunnel}'}: {result.get('cleared', 0)} tunnel(s) ended")
    return EXIT_OK


def _reload(socket_path: str) -> int:
    """``fixup reload``: the daemon's answer; a refused reload exits 2 like ``fixup check``."""
    result = _request(socket_path, {"cmd": "reload"}, timeout=30)
    if not result.get("ok"):
        _error(f"reload refused: {result.get('error', 'no reason given')}")
        return EXIT_POLICY
    changed = result.get("changed") or []
    print(f"reloaded: {', '.join(changed) if changed else 'nothing changed'}")
    return EXIT_OK


def _stop(socket_path: str, policy_path: str | None) -> int:
    """``fixup stop``: the real shutdown.  A running daemon removes everything and exits (this
    waits for it); with none running, what a stopped or crashed one left is removed here."""
    import os
    import time

    from fixup.io.control import NoDaemon

    try:
        _request(socket_path, {"cmd": "stop"})
    except NoDaemon:
        from fixup.io.pat import netfilter
        from fixup.io.pat.state_store import FILE_NAME
        from fixup.policy.loader import DEFAULT_BPF_DIR, DEFAULT_STATE_DIR

        policy = _load(policy_path) if policy_path else None
        state_dir = policy.state_dir if policy else DEFAULT_STATE_DIR
        from fixup.io.pat import permit

        permit.remove()
        netfilter.remove()
        _remove_bpf(policy.bpf_dir if policy else DEFAULT_BPF_DIR, (*policy.inside, policy.outside) if policy else ())
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(os.path.join(state_dir, FILE_NAME + suffix))
            except FileNotFoundError:
                pass
        print(f"no fixup daemon at {socket_path}: its rules and the saved calls in {state_dir} removed")
        return EXIT_OK
    deadline = time.monotonic() + 60
    while os.path.exists(socket_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    if os.path.exists(socket_path):
        raise FixupError(f"the daemon at {socket_path} was asked to stop but is still running after 60 s")
    print("fixup stopped: rules, GRE translations and saved calls removed")
    return EXIT_OK


def _remove_bpf(pin_dir: str, interfaces: Sequence[str]) -> None:
    """What a stopped daemon's eBPF path left: its program off ``interfaces``, its pins."""
    import os
    import socket

    from fixup.io.pat import gre_bpf

    if not os.path.isdir(pin_dir):
        return
    for name in interfaces:
        try:
            from fixup.io.pat.libbpf import detach_tc

            detach_tc(socket.if_nametoindex(name), gre_bpf.TC_HANDLE, gre_bpf.TC_PRIORITY)
        except (OSError, FixupError):
            pass
    gre_bpf.remove_pins(pin_dir)


def _debug(socket_path: str, what: str) -> int:
    level = "debug" if what == "pptp" else "info"
    _request(socket_path, {"cmd": "debug", "level": level})
    print("debug pptp on" if level == "debug" else "debug pptp off")
    return EXIT_OK


def _lab(argv: list[str]) -> int:
    from fixup.lab.scenario import main as lab_main

    return lab_main(argv)


def _bench(argv: list[str]) -> int:
    from fixup.bench.main import main as bench_main

    return bench_main(argv)


if __name__ == "__main__":
    sys.exit(main())
