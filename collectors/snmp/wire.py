"""SNMP messages on the wire, read and written by dyzur: the BER pieces of RFC 3416's PDUs
and SNMPv2c messages (SNMPv3's are in usm.py).

pyasn1's generic BER decoder cost about 65 us per varbind, most of a poll's CPU; GET and
GETBULK messages and their answers are simple enough to read directly: about 3 us per varbind.
Every backend hands the same Python values (int, str, None) to the poller: ``octets_to_python``
and ``END_OF_MIB`` are shared with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from collectors.snmp.profile import Value


class _EndOfMib:
    """endOfMibView in a walk's answer: the column (and everything after it) has ended."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_MIB"


END_OF_MIB = _EndOfMib()

#: An answer's varbind: the numeric OID (no leading dot) and its value.
VarBind = tuple[str, Value | _EndOfMib]


@dataclass(frozen=True, slots=True)
class Response:
    """A device's answer to one request."""

    varbinds: Sequence[VarBind]
    error_status: int = 0
    error_index: int = 0


def octets_to_python(raw: bytes) -> str:
    """An OCTET STRING as text (UTF-8, trimmed of blanks and NULs), or as hex when it is not
    text. Every backend decodes strings with this, so labels come out the same."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex()
    return text.strip().strip("\x00").strip()


GET, GETBULK, RESPONSE, REPORT = 0xA0, 0xA5, 0xA2, 0xA8
SEQUENCE, INTEGER, OCTETS = 0x30, 0x02, 0x04
_UNSIGNED = frozenset({0x41, 0x42, 0x43, 0x46, 0x47})  # Counter32 Gauge32 TimeTicks Counter64


class BadMessage(ValueError):
    """Bytes that are not an answer we can read: ignored like noise on the port."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def ber_int(value: int) -> bytes:
    return tlv(INTEGER, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


@lru_cache(maxsize=4096)
def _ber_oid_null(oid: str) -> bytes:
    """The varbind (OID, NULL) of a request, encoded once per OID."""
    arcs = [int(x) for x in oid.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(SEQUENCE, tlv(0x06, bytes(body)) + b"\x05\x00")


def encode_pdu(pdu: int, request_id: int, a: int, b: int, oids: Sequence[str]) -> bytes:
    """A GET (a = b = 0) or GETBULK (a = non-repeaters, b = max-repetitions) PDU."""
    var_binds = tlv(SEQUENCE, b"".join(_ber_oid_null(oid) for oid in oids))
    return tlv(pdu, ber_int(request_id) + ber_int(a) + ber_int(b) + var_binds)


def encode_request(
    community: bytes, pdu: int, request_id: int, a: int, b: int, oids: Sequence[str]
) -> bytes:
    """An SNMPv2c message carrying encode_pdu(...)."""
    body = encode_pdu(pdu, request_id, a, b, oids)
    return tlv(SEQUENCE, b"\x02\x01\x01" + tlv(OCTETS, community) + body)


def head(buf: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """(tag, start, end) of the TLV at ``pos``, which must end by ``limit``."""
    if pos + 2 > limit:
        raise BadMessage("truncated")
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or pos + k > limit:
            raise BadMessage("bad length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    if pos + n > limit:
        raise BadMessage("truncated")
    return tag, pos, pos + n


def expect(tag: int, buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    """(start, end) of the TLV at ``pos``, which must have ``tag``."""
    got, start, end = head(buf, pos, limit)
    if got != tag:
        raise BadMessage(f"tag {got:#x} where {tag:#x} belongs")
    return start, end


def read_int(buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    """(the INTEGER at ``pos``, the position after it)."""
    start, end = expect(INTEGER, buf, pos, limit)
    return int.from_bytes(buf[start:end], "big", signed=True), end


def _oid(buf: bytes, start: int, end: int) -> str:
    return _oid_text(buf[start:end])


@lru_cache(maxsize=1 << 16)
def _oid_text(raw: bytes) -> str:
    """An OID's dotted text; cached, since devices answer the same OIDs every poll (decoding
    them was the largest part of a poll's CPU)."""
    arcs: list[int] = []
    value = 0
    for c in raw:
        value = (value << 7) | (c & 0x7F)
        if not c & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise BadMessage("empty OID")
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(map(str, head + arcs[1:]))


def _value(tag: int, buf: bytes, start: int, end: int) -> Value | _EndOfMib:
    """A varbind's value as to_python gives pysnmp's."""
    if tag == INTEGER:
        return int.from_bytes(buf[start:end], "big", signed=True)
    if tag == OCTETS or tag == 0x44:  # OCTET STRING (and BITS), Opaque
        return octets_to_python(buf[start:end])
    if tag in _UNSIGNED:
        return int.from_bytes(buf[start:end], "big")
    if tag == 0x06:
        return _oid(buf, start, end)
    if tag == 0x40:  # IpAddress
        return ".".join(map(str, buf[start:end]))
    if tag == 0x82:
        return END_OF_MIB
    return None  # NULL, noSuchObject, noSuchInstance, a type we do not know


def read_pdu(buf: bytes, pos: int, limit: int) -> tuple[int, int, Response]:
    """(the PDU's tag, its request-id, the answer it carries) of the PDU at ``pos``."""
    try:
        tag, pos, end = head(buf, pos, limit)
        request_id, pos = read_int(buf, pos, end)
        status, pos = read_int(buf, pos, end)
        index, pos = read_int(buf, pos, end)
        pos, end = expect(SEQUENCE, buf, pos, end)
        var_binds: list[VarBind] = []
        while pos < end:
            _, start, pos = head(buf, pos, end)
            oid_start, oid_end = expect(0x06, buf, start, pos)
            value_tag, value_start, value_end = head(buf, oid_end, pos)
            var_binds.append(
                (_oid(buf, oid_start, oid_end), _value(value_tag, buf, value_start, value_end))
            )
    except IndexError:
        raise BadMessage("truncated") from None
    if status:
        return tag, request_id, Response((), status, index)
    return tag, request_id, Response(var_binds)


def decode_response(buf: bytes) -> tuple[int, Response]:
    """(request-id, the answer) of an SNMPv2c Response-PDU; raise BadMessage otherwise."""
    pos, end = expect(SEQUENCE, buf, 0, len(buf))
    start, pos = expect(INTEGER, buf, pos, end)
    if buf[start:pos] != b"\x01":
        raise BadMessage("not SNMPv2c")
    _, pos = expect(OCTETS, buf, pos, end)  # community
    tag, request_id, response = read_pdu(buf, pos, end)
    if tag != RESPONSE:
        raise BadMessage("not a Response-PDU")
    return request_id, response
