"""Policy loader: valid files, every kind of error with its key and 1-based line, shipped examples."""
from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from textwrap import dedent

import pytest

from fixup.errors import PolicyError
from fixup.policy.loader import Policy, load_policy, parse_policy
from fixup.proto.pat.config import Timeouts, TrackerConfig

pytestmark = pytest.mark.unit

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"

FULL = dedent(
    """\
    inside: [br-in, br-lab]
    outside: gw-out
    pat_address: 198.51.100.1
    fixup:
      pptp:
        ports: [1723, 11723]
        gre: queue
        timeouts: {control_idle: 3600, call_idle: 600, call_setup: 60, clearing: 10}
    runtime:
      queue: 7
      control_socket: /run/fixup/other.sock
      log_level: debug
    """
)

BASE = "inside: [br-in]\noutside: gw-out\n"  # lines 1-2; error cases append from line 3


def fails(text: str, path: str = "x.yaml") -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path)
    return caught.value


# -- valid policies ------------------------------------------------------------------------------


def test_full_policy_sets_every_field() -> None:
    policy = parse_policy(FULL, "full.yaml")
    assert policy == Policy(
        inside=("br-in", "br-lab"),
        outside="gw-out",
        pat_address=IPv4Address("198.51.100.1"),
        pptp_ports=(1723, 11723),
        timeouts=Timeouts(control_idle=3600, call_idle=600, call_setup=60, clearing=10),
        gre="queue",
        queue_num=7,
        control_socket="/run/fixup/other.sock",
        log_level="debug",
        source="full.yaml",
    )


def test_minimal_policy_takes_defaults() -> None:
    policy = parse_policy("inside: br-in\noutside: gw-out\n")
    assert policy.inside == ("br-in",)
    assert policy.outside == "gw-out"
    assert policy.pat_address is None
    assert policy.pptp_ports == (1723,)
    assert policy.timeouts == Timeouts()
    assert policy.gre == "ebpf"  # issue 13: the default where the kernel allows (else the daemon falls back)
    assert policy.queue_num == 1723
    assert policy.control_socket == "/run/fixup/fixup.sock"
    assert policy.log_level == "info"
    assert policy.source == "<policy>"
    assert policy.terminate is None and dict(policy.aaa) == {}


def test_empty_port_list_means_no_fixup_protocol_pptp() -> None:
    assert parse_policy(BASE + "fixup: {pptp: {ports: []}}\n").pptp_ports == ()


def test_single_port_without_list() -> None:
    assert parse_policy(BASE + "fixup: {pptp: {ports: 10000}}\n").pptp_ports == (10000,)


def test_partial_timeouts_keep_other_defaults_and_accept_pix_hms() -> None:
    policy = parse_policy(BASE + 'fixup: {pptp: {timeouts: {control_idle: "1:00:00", clearing: 2.5}}}\n')
    assert policy.timeouts == Timeouts(control_idle=3600.0, clearing=2.5)


def test_unquoted_hms_is_read_as_hours_minutes_seconds() -> None:
    # YAML 1.1 would read 0:10:00 as a string and 1:00:00 as sexagesimal 3600: both mean PIX hh:mm:ss.
    policy = parse_policy(BASE + "fixup: {pptp: {timeouts: {call_idle: 0:10:00, control_idle: 1:00:00}}}\n")
    assert policy.timeouts.call_idle == 600.0
    assert policy.timeouts.control_idle == 3600.0


def test_interface_names_are_taken_literally() -> None:
    # "on" would be a YAML 1.1 boolean; as an interface name it is just a word.
    policy = parse_policy("inside: on\noutside: eth0.100\n")
    assert policy.inside == ("on",)
    assert policy.outside == "eth0.100"


def test_gre_kernel_is_accepted_and_log_level_is_case_insensitive() -> None:
    policy = parse_policy(BASE + "fixup: {pptp: {gre: kernel}}\nruntime: {log_level: WARNING}\n")
    assert policy.gre == "kernel"
    assert policy.log_level == "warning"


def test_empty_sections_are_defaults() -> None:
    policy = parse_policy(BASE + "fixup:\nruntime:\nterminate:\naaa:\n")
    assert policy == parse_policy(BASE)


def test_empty_aaa_section_has_no_groups() -> None:
    policy = parse_policy(BASE + "aaa: {}\n")
    assert dict(policy.aaa) == {}


def test_policy_is_frozen_and_hashable() -> None:
    policy = parse_policy(BASE + "terminate: {listen: 198.51.100.1, pool: 192.168.1.1-192.168.1.50}\n")
    with pytest.raises(AttributeError):
        policy.outside = "other"  # type: ignore[misc]
    assert hash(policy) == hash(parse_policy(BASE + "terminate: {listen: 198.51.100.1, pool: 192.168.1.1-192.168.1.50}\n"))


def test_tracker_config_uses_resolved_pat_address() -> None:
    policy = parse_policy(FULL)
    config = policy.tracker_config(IPv4Address("203.0.113.9"))
    assert config == TrackerConfig(
        pat_address=IPv4Address("203.0.113.9"),
        control_ports=frozenset({1723, 11723}),
        timeouts=policy.timeouts,
    )


def test_tracker_config_falls_back_to_policy_pat_address() -> None:
    assert parse_policy(FULL).tracker_config().pat_address == IPv4Address("198.51.100.1")
    with pytest.raises(ValueError):
        parse_policy(BASE).tracker_config()


# -- errors: key and line ------------------------------------------------------------------------

ERROR_CASES = [
    # (id, text, key, line, fragment of the message)
    ("unknown-top-key", BASE + "runtme: {}\n", "runtme", 3, "did you mean 'runtime'?"),
    ("unknown-nested-key", BASE + "fixup:\n  pptp:\n    port: [1723]\n", "fixup.pptp.port", 5,
     "allowed here: ports, gre, permit, timeouts"),
    ("unknown-timeout", BASE + "fixup: {pptp: {timeouts: {idle: 5}}}\n", "fixup.pptp.timeouts.idle", 3,
     "allowed here: control_idle, call_idle, call_setup, clearing"),
    ("duplicate-key", BASE + "outside: other\n", "outside", 3, "duplicate key (first set on line 2)"),
    ("duplicate-nested", BASE + "runtime:\n  queue: 1\n  queue: 2\n", "runtime.queue", 5,
     "duplicate key (first set on line 4)"),
    ("missing-inside", "outside: gw-out\n", "inside", 1, "missing required key"),
    ("missing-outside", "\n\ninside: br-in\n", "outside", 3, "missing required key"),
    ("ports-not-list", BASE + "fixup:\n  pptp:\n    ports: abc\n", "fixup.pptp.ports", 5,
     "expected a list of TCP ports (1-65535), got 'abc'"),
    ("port-out-of-range", BASE + "fixup:\n  pptp:\n    ports:\n      - 1723\n      - 70000\n",
     "fixup.pptp.ports[1]", 7, "expected a TCP port (1-65535), got '70000'"),
    ("port-zero", BASE + "fixup: {pptp: {ports: [0]}}\n", "fixup.pptp.ports[0]", 3, "got '0'"),
    ("port-boolean", BASE + "fixup: {pptp: {ports: [yes]}}\n", "fixup.pptp.ports[0]", 3, "got 'yes'"),
    ("port-twice", BASE + "fixup: {pptp: {ports: [1723, 1723]}}\n", "fixup.pptp.ports[1]", 3,
     "port 1723 listed twice"),
    ("ports-null", BASE + "fixup:\n  pptp:\n    ports:\n", "fixup.pptp.ports", 5, "got nothing (null)"),
    ("bad-ipv4", BASE + "pat_address: 198.51.100.300\n", "pat_address", 3,
     "bad IPv4 address '198.51.100.300'"),
    ("ipv6-not-ipv4", BASE + "pat_address: '2001:db8::1'\n", "pat_address", 3, "bad IPv4 address"),
    ("ipv4-multicast", BASE + "pat_address: 224.0.0.5\n", "pat_address", 3, "not a usable unicast"),
    ("ipv4-unspecified", BASE + "pat_address: 0.0.0.0\n", "pat_address", 3, "not a usable unicast"),
    ("ifname-too-long", "inside: [br-in]\noutside: a-very-long-ifname\n", "outside", 2,
     "longer than 15 bytes"),
    ("ifname-slash", "inside: [br-in, 'br/x']\noutside: gw\n", "inside[1]", 1, "'/'"),
    ("ifname-space", "inside: 'br in'\noutside: gw\n", "inside", 1, "whitespace"),
    ("ifname-empty", "inside: ''\noutside: gw\n", "inside", 1, "empty"),
    ("ifname-dotdot", "inside: br-in\noutside: '..'\n", "outside", 2, "not allowed"),
    ("ifname-mapping", "inside: br-in\noutside:\n  name: gw\n", "outside", 3,
     "expected an interface name, got a mapping"),
    ("inside-empty-list", "inside: []\noutside: gw\n", "inside", 1, "at least one interface"),
    ("inside-twice", "inside:\n  - br-in\n  - br-in\noutside: gw\n", "inside[1]", 3, "listed twice"),
    ("outside-also-inside", "inside: [br-in]\noutside: br-in\n", "outside", 2, "also listed in 'inside'"),
    ("fixup-not-mapping", BASE + "fixup: [pptp]\n", "fixup", 3, "expected a mapping with keys pptp"),
    ("gre-bad-word", BASE + "fixup: {pptp: {gre: tunnel}}\n", "fixup.pptp.gre", 3,
     "expected one of ebpf, kernel, queue, got 'tunnel'"),
    ("timeout-negative", BASE + "fixup: {pptp: {timeouts: {call_idle: -1}}}\n",
     "fixup.pptp.timeouts.call_idle", 3, "positive number of seconds"),
    ("timeout-zero", BASE + "fixup: {pptp: {timeouts: {call_idle: 0}}}\n",
     "fixup.pptp.timeouts.call_idle", 3, "positive number of seconds"),
    ("timeout-word", BASE + "fixup: {pptp: {timeouts: {call_idle: soon}}}\n",
     "fixup.pptp.timeouts.call_idle", 3, "got 'soon'"),
    ("timeout-ambiguous-mm-ss", BASE + "fixup: {pptp: {timeouts: {clearing: 10:00}}}\n",
     "fixup.pptp.timeouts.clearing", 3, "H:MM:SS"),
    ("timeout-infinite", BASE + "fixup: {pptp: {timeouts: {clearing: .inf}}}\n",
     "fixup.pptp.timeouts.clearing", 3, "positive number"),
    ("queue-too-big", BASE + "runtime:\n  queue: 65536\n", "runtime.queue", 4,
     "expected an NFQUEUE number (0-65535), got '65536'"),
    ("queue-string", BASE + "runtime: {queue: 'one'}\n", "runtime.queue", 3, "got 'one'"),
    ("log-level", BASE + "runtime: {log_level: verbose}\n", "runtime.log_level", 3,
     "one of debug, info, warning, error"),
    ("socket-relative", BASE + "runtime: {control_socket: fixup.sock}\n", "runtime.control_socket", 3,
     "absolute path"),
    ("socket-too-long", BASE + "runtime: {control_socket: /" + "s" * 120 + "}\n",
     "runtime.control_socket", 3, "too long for a unix socket"),
    ("terminate-not-mapping", BASE + "\nterminate: yes\n", "terminate", 4, "expected a mapping"),
    ("aaa-not-mapping", BASE + "aaa: [radius]\n", "aaa", 3, "expected a mapping"),
    ("aaa-duplicate", BASE + "aaa:\n  server: {}\n  server: {}\n", "aaa.server", 5, "duplicate key"),
    ("custom-tag", BASE + "pat_address: !addr 198.51.100.1\n", "pat_address", 3, "tagged !addr"),
    ("merge-key", BASE + "<<: {x: 1}\n", "<<", 3, "unknown key"),
]


@pytest.mark.parametrize(
    ("text", "key", "line", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_names_key_and_line(text: str, key: str, line: int, fragment: str) -> None:
    error = fails(text)
    assert (error.key, error.line, error.path) == (key, line, "x.yaml")
    message = str(error)
    assert message.startswith(f"x.yaml:{line}: {key}: ")
    assert fragment in message
    assert "\n" not in message


def test_error_message_is_exactly_one_clear_line() -> None:
    text = BASE + "pat_address: 198.51.100.1\n\nfixup:\n  pptp:\n    ports: abc\n"
    error = fails(text, "policies/x.yaml")
    assert str(error) == (
        "policies/x.yaml:7: fixup.pptp.ports: expected a list of TCP ports (1-65535), got 'abc'"
    )


YAML_SYNTAX_CASES = [
    # (id, text, line)
    ("unclosed-flow", BASE + "fixup: {pptp: [\n", 4),
    ("tab-indent", BASE + "runtime:\n\tqueue: 1\n", 4),
    ("bad-nesting", BASE + "pat_address: a: b\n", 3),
    ("two-documents", BASE + "---\ninside: x\n", 3),
    ("control-character", BASE + "pat_address: 198.51.100.1\x07\n", 3),
    ("undefined-alias", BASE + "pat_address: *nowhere\n", 3),
]


@pytest.mark.parametrize(
    ("text", "line"), [case[1:] for case in YAML_SYNTAX_CASES], ids=[case[0] for case in YAML_SYNTAX_CASES]
)
def test_yaml_syntax_error_has_its_line(text: str, line: int) -> None:
    error = fails(text)
    assert error.line == line
    assert error.key == ""
    assert str(error).startswith(f"x.yaml:{line}: YAML syntax error: ")
    assert "\n" not in str(error)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_an_error(text: str) -> None:
    error = fails(text)
    assert error.line == 1
    assert str(error).startswith("x.yaml:1: empty policy file")


@pytest.mark.parametrize(("text", "shown"), [("- br-in\n", "a list"), ("br-in\n", "'br-in'")])
def test_top_level_must_be_a_mapping(text: str, shown: str) -> None:
    error = fails(text)
    assert error.line == 1
    assert str(error).endswith(f"got {shown}")


def test_unknown_key_lists_allowed_keys() -> None:
    message = str(fails(BASE + "runtime: {socket: /x}\n"))
    assert "runtime.socket: unknown key" in message
    assert "allowed here: queue, control_socket, log_level" in message


# -- files ---------------------------------------------------------------------------------------


def test_load_policy_reads_file_and_records_source(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(FULL)
    policy = load_policy(str(path))
    assert policy.source == str(path)
    assert policy.queue_num == 7


def test_load_policy_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(BASE + "runtime: {queue: -1}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert str(caught.value).startswith(f"{path}:3: runtime.queue: ")


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert caught.value.path == str(path)
    assert caught.value.line is None
    assert "cannot read policy file" in str(caught.value)


def test_non_utf8_file_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"inside: br-in\noutside: gw\n# caf\xe9\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert caught.value.line == 3
    assert "not UTF-8" in str(caught.value)


def test_shipped_policy_examples_exist() -> None:
    names = {path.name for path in POLICIES_DIR.glob("*.yaml")}
    assert {"pat-gateway.yaml", "minimal.yaml", "no-fixup.yaml"} <= names


@pytest.mark.parametrize("path", sorted(POLICIES_DIR.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_policy_loads(path: Path) -> None:
    policy = load_policy(str(path))
    assert policy.inside and policy.outside
    assert policy.source == str(path)


def test_shipped_examples_mean_what_their_names_say() -> None:
    gateway = load_policy(str(POLICIES_DIR / "pat-gateway.yaml"))
    assert gateway.pat_address == IPv4Address("198.51.100.1")
    assert gateway.pptp_ports == (1723,)
    assert load_policy(str(POLICIES_DIR / "no-fixup.yaml")).pptp_ports == ()
    minimal = load_policy(str(POLICIES_DIR / "minimal.yaml"))
    assert minimal == Policy(inside=minimal.inside, outside=minimal.outside, source=minimal.source)
