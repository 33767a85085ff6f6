"""Property tests of the wire codecs: any bytes in, only BadInput out; build and parse invert."""
from __future__ import annotations

import struct
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixup.errors import BadInput, BadLength, BadReserved, Truncated
from fixup.wire.gre import GreHeader, build_gre, check_payload, parse_gre
from fixup.wire.pptp import (
    MAGIC_COOKIE,
    MESSAGE_CLASSES,
    MESSAGE_LENGTHS,
    PREFIX_LENGTH,
    MessageType,
    build_message,
    parse_header,
    parse_message,
)
from fixup.wire.pptp_messages import FORMAT_KEY

pytestmark = pytest.mark.unit

MODEST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_INT_BITS = {"B": 8, "H": 16, "I": 32}


def _field_strategy(fmt: str, name: str, *, zero_reserved: bool) -> st.SearchStrategy[Any]:
    if fmt in _INT_BITS:
        if zero_reserved and name.startswith("reserved"):
            return st.just(0)
        return st.integers(0, (1 << _INT_BITS[fmt]) - 1)
    # text field: no trailing NUL, since parse strips the NUL padding
    return st.binary(max_size=int(fmt[:-1])).map(lambda b: b.rstrip(b"\0"))


def _message_strategy(message_type: MessageType, *, zero_reserved: bool = True) -> st.SearchStrategy[Any]:
    cls = MESSAGE_CLASSES[message_type]
    return st.builds(cls, **{
        f.name: _field_strategy(f.metadata[FORMAT_KEY], f.name, zero_reserved=zero_reserved) for f in fields(cls)
    })


messages = st.sampled_from(list(MessageType)).flatmap(_message_strategy)
messages_any_reserved = st.sampled_from(list(MessageType)).flatmap(
    lambda t: _message_strategy(t, zero_reserved=False))


@st.composite
def valid_wire(draw: st.DrawFn) -> bytes:
    """A correct header (Reserved0 = 0) followed by arbitrary body bytes of the right size."""
    message_type = draw(st.sampled_from(list(MessageType)))
    length = MESSAGE_LENGTHS[message_type]
    header = struct.pack(">HHIHH", length, 1, MAGIC_COOKIE, message_type, 0)
    return header + draw(st.binary(min_size=length - 12, max_size=length - 12))


@st.composite
def mutated_wire(draw: st.DrawFn) -> bytes:
    """A valid message with one byte changed and maybe cut or extended: near-misses reach
    deeper into the parser than uniformly random bytes."""
    wire = bytearray(draw(valid_wire()))
    position = draw(st.integers(0, len(wire) - 1))
    wire[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(wire) + 4))
    return bytes(wire[:cut]) + bytes(max(0, cut - len(wire)))


# --- PPTP control messages ----------------------------------------------------------------


@MODEST
@given(st.binary(max_size=300) | mutated_wire())
def test_any_bytes_raise_only_bad_input(data: bytes) -> None:
    for parse in (parse_header, parse_message, lambda d: parse_message(d, strict=False)):
        try:
            parse(data)
        except BadInput:
            pass


@MODEST
@given(st.binary(max_size=40), st.integers(0, 50))
def test_header_at_any_offset_raises_only_bad_input(data: bytes, offset: int) -> None:
    try:
        parse_header(data, offset)
    except BadInput:
        pass


@MODEST
@given(messages)
def test_built_message_parses_back_equal(message: Any) -> None:
    wire = build_message(message)
    assert len(wire) == MESSAGE_LENGTHS[message.message_type]
    assert parse_message(wire) == message


@MODEST
@given(messages_any_reserved)
def test_lenient_parse_keeps_reserved_values(message: Any) -> None:
    assert parse_message(build_message(message), strict=False) == message


@MODEST
@given(valid_wire())
def test_build_of_parse_is_identity(wire: bytes) -> None:
    assert build_message(parse_message(wire, strict=False)) == wire
    try:
        strict = parse_message(wire)
    except BadReserved:
        return
    assert build_message(strict) == wire


@MODEST
@given(messages, st.data())
def test_truncated_message_raises_truncated(message: Any, data: st.DataObject) -> None:
    wire = build_message(message)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(Truncated):
        parse_message(wire[:cut])


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_truncation_of_every_message(message_type: MessageType) -> None:
    wire = build_message(MESSAGE_CLASSES[message_type]())
    for cut in range(len(wire)):
        with pytest.raises(Truncated):
            parse_message(wire[:cut])
        if cut >= PREFIX_LENGTH:
            assert parse_header(wire[:cut]).message_type is message_type
    for extra in (1, 2, 100):
        with pytest.raises(BadLength):
            parse_message(wire + bytes(extra))


# --- enhanced GRE -------------------------------------------------------------------------

gre_headers = st.builds(
    GreHeader,
    call_id=st.integers(0, 0xFFFF),
    payload_length=st.integers(0, 200),
    sequence=st.none() | st.integers(0, 0xFFFFFFFF),
    acknowledgment=st.none() | st.integers(0, 0xFFFFFFFF),
)


@st.composite
def gre_like(draw: st.DrawFn) -> bytes:
    """Random bytes behind a mostly plausible first word, so flag handling gets exercised."""
    flags = draw(st.integers(0, 0xFFFF) | st.sampled_from([0x3081, 0x3001, 0x2081, 0x2001]))
    protocol = draw(st.sampled_from([0x880B, 0x0800, 0x880A]))
    return flags.to_bytes(2, "big") + protocol.to_bytes(2, "big") + draw(st.binary(max_size=20))


@MODEST
@given(st.binary(max_size=40) | gre_like(), st.integers(0, 8))
def test_gre_any_bytes_raise_only_bad_input(data: bytes, offset: int) -> None:
    try:
        parse_gre(data, offset)
    except BadInput:
        pass


@MODEST
@given(gre_headers, st.data())
def test_gre_round_trip(header: GreHeader, data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=header.payload_length, max_size=header.payload_length))
    packet = build_gre(header, payload)
    assert len(packet) == header.header_length + header.payload_length
    parsed = parse_gre(packet)
    assert parsed == header
    check_payload(parsed, len(packet) - parsed.header_length)
    assert build_gre(parsed, packet[parsed.header_length:]) == packet


@MODEST
@given(gre_headers, st.data())
def test_gre_truncated_header_raises_truncated(header: GreHeader, data: st.DataObject) -> None:
    wire = build_gre(header)
    cut = data.draw(st.integers(0, header.header_length - 1))
    with pytest.raises(Truncated):
        parse_gre(wire[:cut])
