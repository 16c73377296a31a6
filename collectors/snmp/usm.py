"""SNMPv3 messages with the User-based Security Model, read and written by dyzur: authPriv
with HMAC-SHA-96 (RFC 3414) or HMAC-SHA-256-192 (RFC 7860), privacy by AES-128 in CFB mode
(RFC 3826), the message format of RFC 3412.

pysnmp did the same through pyasn1 at about 8 polls a second, a new engine, an engine ID
discovery and a key localization (a million bytes hashed) every poll. Here the discovered
engine and its clock (``Engine``) are kept between polls by the backend, the localized keys
are cached, and a message is read with the BER reader of wire.py.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from collectors.snmp.wire import (
    GET,
    OCTETS,
    SEQUENCE,
    BadMessage,
    Response,
    ber_int,
    encode_pdu,
    expect,
    read_int,
    read_pdu,
    tlv,
)

#: The hash and the digest length of each auth protocol the options allow.
AUTH_HASHES = {"SHA": ("sha1", 12), "SHA256": ("sha256", 24)}
_AUTH, _PRIV, _REPORTABLE = 0x01, 0x02, 0x04
_USM = 3
_MAX_SIZE = ber_int(65507)
_KEY_BYTES = 1 << 20
_MAX_INT = (1 << 31) - 1  # RFC 3414 A.2: the password repeated to a million bytes

#: The usmStats counters a Report names (RFC 3414 5), by OID.
REPORTS = {
    "1.3.6.1.6.3.15.1.1.1.0": "unsupportedSecLevels",
    "1.3.6.1.6.3.15.1.1.2.0": "notInTimeWindows",
    "1.3.6.1.6.3.15.1.1.3.0": "unknownUserNames",
    "1.3.6.1.6.3.15.1.1.4.0": "unknownEngineIDs",
    "1.3.6.1.6.3.15.1.1.5.0": "wrongDigests",
    "1.3.6.1.6.3.15.1.1.6.0": "decryptionErrors",
}

_salts = itertools.count(secrets.randbits(63))


def _aes_cfb(key: bytes, iv: bytes) -> Any:
    """AES in CFB mode (RFC 3826). cryptography is imported here, at the first SNMPv3
    message: an agent polling SNMPv2c only does not load it."""
    # cryptography keeps CFB among its "decrepit" modes (since 47); RFC 3826 is what it is.
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    return Cipher(algorithms.AES(key), CFB(iv))


@lru_cache(maxsize=1 << 16)
def localized_key(hash_name: str, password: bytes, engine_id: bytes) -> bytes:
    """RFC 3414 A.2: the password's key localized to one engine (cached: a million bytes are
    hashed for each). Every device has an engine of its own and a user two keys: the cache
    holds a fleet of thousands, a smaller one would hash again on every poll."""
    repeated = (password * (_KEY_BYTES // len(password) + 1))[:_KEY_BYTES]
    key = hashlib.new(hash_name, repeated).digest()
    return hashlib.new(hash_name, key + engine_id + key).digest()


@dataclass(frozen=True, slots=True)
class User:
    """A USM user with its passwords and protocols (the only thing here holding secrets)."""

    name: bytes
    auth_protocol: str
    auth_password: bytes
    priv_password: bytes

    def __repr__(self) -> str:
        return f"User(name={self.name!r}, auth_protocol={self.auth_protocol!r}, keys=***)"

    def keys(self, engine_id: bytes) -> tuple[bytes, bytes]:
        """(auth key, AES key) localized to ``engine_id``; the privacy key is localized with
        the auth protocol's hash and cut to 128 bits, as Net-SNMP and pysnmp do."""
        hash_name = AUTH_HASHES[self.auth_protocol][0]
        auth = localized_key(hash_name, self.auth_password, engine_id)
        priv = localized_key(hash_name, self.priv_password, engine_id)
        return auth, priv[:16]

    def digest(self, auth_key: bytes, message: bytes) -> bytes:
        hash_name, length = AUTH_HASHES[self.auth_protocol]
        return hmac.new(auth_key, message, hash_name).digest()[:length]


@dataclass(slots=True)
class Engine:
    """A device's SNMP engine as we know it: its ID and its clock (boots, seconds) learned at
    ``at`` (our monotonic clock)."""

    id: bytes
    boots: int
    time: int
    at: float

    def clock(self, now: float) -> tuple[int, int]:
        """(boots, time) now, each within 0..2^31-1 as RFC 3414 has them."""
        time = self.time + int(now - self.at)
        return min(max(self.boots, 0), _MAX_INT), min(max(time, 0), _MAX_INT)

    def learn(self, boots: int, time: int, now: float, *, force: bool = False) -> None:
        """RFC 3414 3.2.7: an authentic answer's clock is taken when it is later than ours
        (or always, from an authentic notInTimeWindows report)."""
        ours = self.clock(now)
        if force or (boots, time) > ours:
            self.boots, self.time, self.at = boots, time, now


@dataclass(frozen=True, slots=True)
class Answer:
    """A message a device sent: whose engine, its clock, whether it was authenticated and
    encrypted, and the PDU (a Response or a Report) it carried."""

    msg_id: int
    engine_id: bytes
    boots: int
    time: int
    authentic: bool
    private: bool
    pdu: int
    response: Response

    def report(self) -> str:
        """What a Report is about ("wrongDigests", ...), or "" for a Response."""
        if not self.response.varbinds:
            return "report"
        oid = self.response.varbinds[0][0]
        return REPORTS.get(oid, f"report {oid}")


def _message(flags: int, msg_id: int, security: bytes, data: bytes) -> tuple[bytes, int]:
    """The message, and where its security parameters' OCTET STRING content starts."""
    global_data = tlv(
        SEQUENCE, ber_int(msg_id) + _MAX_SIZE + tlv(OCTETS, bytes((flags,))) + ber_int(_USM)
    )
    security_octets = tlv(OCTETS, security)
    body = b"\x02\x01\x03" + global_data + security_octets + data
    message = tlv(SEQUENCE, body)
    start = len(message) - len(body) + 3 + len(global_data) + len(security_octets) - len(security)
    return message, start


def discovery_request(msg_id: int, request_id: int) -> bytes:
    """RFC 3414 4: an unauthenticated, empty GET whose Report names the device's engine."""
    empty = tlv(OCTETS, b"")
    security = tlv(SEQUENCE, empty + ber_int(0) + ber_int(0) + empty + empty + empty)
    scoped = tlv(SEQUENCE, empty + empty + encode_pdu(GET, request_id, 0, 0, ()))
    return _message(_REPORTABLE, msg_id, security, scoped)[0]


def encode_request(
    user: User,
    engine: Engine,
    now: float,
    msg_id: int,
    context: bytes,
    pdu: bytes,
) -> bytes:
    """An authPriv message carrying ``pdu`` to ``engine``."""
    auth_key, priv_key = user.keys(engine.id)
    boots, time = engine.clock(now)
    salt = (next(_salts) & ((1 << 64) - 1)).to_bytes(8, "big")
    iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
    scoped = tlv(SEQUENCE, tlv(OCTETS, engine.id) + tlv(OCTETS, context) + pdu)
    encryptor = _aes_cfb(priv_key, iv).encryptor()
    encrypted = encryptor.update(scoped) + encryptor.finalize()
    length = AUTH_HASHES[user.auth_protocol][1]
    before_digest = tlv(OCTETS, engine.id) + ber_int(boots) + ber_int(time) + tlv(OCTETS, user.name)
    content = before_digest + tlv(OCTETS, bytes(length)) + tlv(OCTETS, salt)
    security = tlv(SEQUENCE, content)
    message, start = _message(_AUTH | _PRIV | _REPORTABLE, msg_id, security, tlv(OCTETS, encrypted))
    at = start + len(security) - len(content) + len(before_digest) + 2
    digest = user.digest(auth_key, message)
    return message[:at] + digest + message[at + length :]


def decode_message(buf: bytes, user: User, engine_id: bytes | None = None) -> Answer:
    """The answer in ``buf``; BadMessage for anything else, including a message claiming to be
    authenticated whose digest is not ``user``'s or, when ``engine_id`` is given, that comes
    from another engine (checked before any key is made for it)."""
    try:
        return _decode(buf, user, engine_id)
    except (IndexError, ValueError) as exc:
        raise BadMessage(str(exc) if isinstance(exc, BadMessage) else "truncated") from None


def _decode(buf: bytes, user: User, expected_engine: bytes | None) -> Answer:
    pos, end = expect(SEQUENCE, buf, 0, len(buf))
    version, pos = read_int(buf, pos, end)
    if version != 3:
        raise BadMessage("not SNMPv3")
    at, pos = expect(SEQUENCE, buf, pos, end)
    msg_id, at = read_int(buf, at, pos)
    _, at = read_int(buf, at, pos)  # msgMaxSize
    flags_start, at = expect(OCTETS, buf, at, pos)
    flags = buf[flags_start] if at > flags_start else 0
    model, at = read_int(buf, at, pos)
    if model != _USM:
        raise BadMessage("not USM")
    security_start, data_start = expect(OCTETS, buf, pos, end)
    at, security_end = expect(SEQUENCE, buf, security_start, data_start)
    engine_start, at = expect(OCTETS, buf, at, security_end)
    engine_id = buf[engine_start:at]
    boots, at = read_int(buf, at, security_end)
    time, at = read_int(buf, at, security_end)
    name_start, at = expect(OCTETS, buf, at, security_end)
    name = buf[name_start:at]
    digest_start, digest_end = expect(OCTETS, buf, at, security_end)
    salt_start, salt_end = expect(OCTETS, buf, digest_end, security_end)
    authentic = bool(flags & _AUTH)
    if authentic:
        if name != user.name:
            raise BadMessage("another user")
        if expected_engine is not None and engine_id != expected_engine:
            raise BadMessage("another engine")
        auth_key, priv_key = user.keys(engine_id)
        digest = buf[digest_start:digest_end]
        zeroed = buf[:digest_start] + bytes(len(digest)) + buf[digest_end:]
        if not hmac.compare_digest(digest, user.digest(auth_key, zeroed)):
            raise BadMessage("wrong digest")
    if flags & _PRIV:
        if not authentic or salt_end - salt_start != 8 or boots < 0 or time < 0:
            raise BadMessage("bad privacy parameters")
        start, stop = expect(OCTETS, buf, data_start, end)
        iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + buf[salt_start:salt_end]
        decryptor = _aes_cfb(priv_key, iv).decryptor()
        scoped = decryptor.update(buf[start:stop]) + decryptor.finalize()
        at, stop = expect(SEQUENCE, scoped, 0, len(scoped))
    else:
        scoped = buf
        at, stop = expect(SEQUENCE, buf, data_start, end)
    _, at = expect(OCTETS, scoped, at, stop)  # contextEngineID
    _, at = expect(OCTETS, scoped, at, stop)  # contextName
    pdu, _, response = read_pdu(scoped, at, stop)
    return Answer(msg_id, engine_id, boots, time, authentic, bool(flags & _PRIV), pdu, response)
