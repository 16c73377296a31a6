"""The one-time links in pages: ``{public_url}/oncall/ack/{token}`` acknowledges a ticket.

A token is bound to one page: the ticket, the person paged and the escalation step, and it
expires when the next step would be paged (the pager decides ``expires``). It is signed with
HMAC-SHA256 under a key read from ``oncall.link_key_file`` (owner-only; never in the store, a
log, an audit event or an error), so the bridge needs no table of issued links to trust one;
its one-time use is kept in the store (``OncallPages.use_page_link``, by ``token_id``).

A token is short enough for an SMS (160 characters with the page's text): a packed binary
claim — version, expiry (epoch seconds), step, the ticket's year and sequence, the person's id —
and the first 12 bytes of its HMAC (96 bits: a forgery must be guessed online, against a link
that expires and is used once), in URL-safe base64 without padding. The same page sent again
(a retry, a second channel) carries the same token.

``verify`` refuses a malformed token, a forged one (the signature does not match: another key,
an altered claim) and an expired one, each with a ``LinkRefused`` whose ``reason`` says which.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import stat
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bridge.clock import local_time

VERSION = 1
MAC_BYTES = 12
MIN_KEY_BYTES = 16
ACK_PATH = "/oncall/ack/"
# version, expires (epoch s), step, ticket year, ticket sequence; then the person id's bytes.
_HEAD = struct.Struct(">BIBHI")
_TICKET = re.compile(r"^DZ-(\d{4})-(\d{6,9})$")
_PERSON = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # models.ID_PATTERN

MALFORMED = "malformed"
FORGED = "forged"
EXPIRED = "expired"


class LinkRefused(Exception):
    """A link that acknowledges nothing; ``reason`` is ``malformed``, ``forged`` or
    ``expired`` (the message says it for a person)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says: the page it belongs to, its id for the one-time use, and
    until when it is valid (aware, UTC)."""

    ticket: str
    person: str
    step: int
    token_id: str
    expires: datetime


def load_link_key(path: Path) -> bytes:
    """The link key from ``path``: refused (ValueError naming the file, never its content) when
    missing, open to group or others, or shorter than 16 bytes."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"oncall.link_key_file: {str(path)!r} is not a file")
        if mode & 0o077:
            raise ValueError(
                f"oncall.link_key_file: {str(path)!r} is open to group or others; chmod 600 it"
            )
        key = path.read_bytes().strip()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ValueError(f"oncall.link_key_file: cannot read {str(path)!r}: {why}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"oncall.link_key_file: {str(path)!r} holds fewer than {MIN_KEY_BYTES} bytes; "
            "make one with: head -c 32 /dev/urandom | base64 > FILE"
        )
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageLinks:
    """Makes and checks the signed one-time links of pages."""

    def __init__(self, key: bytes, public_url: str) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"link key: must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.public_url = public_url.rstrip("/")

    def __repr__(self) -> str:  # never the key
        return f"PageLinks({self.public_url!r})"

    def _mac(self, claim: bytes) -> bytes:
        return hmac.new(self._key, claim, hashlib.sha256).digest()[:MAC_BYTES]

    def token(self, ticket: str, person: str, step: int, expires: datetime) -> str:
        """The token of the page of ``ticket`` to ``person`` at ``step``, valid until
        ``expires`` (aware). ValueError for what cannot be put in a token."""
        found = _TICKET.fullmatch(ticket)
        if found is None:
            raise ValueError(f"ticket: {ticket!r} is not a ticket number (DZ-YYYY-NNNNNN)")
        if not _PERSON.fullmatch(person):
            raise ValueError(f"person: {person!r} is not a person id")
        if not 0 <= step <= 255:
            raise ValueError(f"step: {step} is out of range 0-255")
        if expires.tzinfo is None:
            raise ValueError("expires: must be an aware datetime")
        claim = _HEAD.pack(
            VERSION, int(expires.timestamp()), step, int(found[1]), int(found[2])
        ) + person.encode("ascii")
        return _b64(claim + self._mac(claim))

    def url(self, ticket: str, person: str, step: int, expires: datetime) -> str:
        """``{public_url}/oncall/ack/{token}``."""
        return self.public_url + ACK_PATH + self.token(ticket, person, step, expires)

    def verify(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a valid token; ``LinkRefused`` for a malformed, forged or expired one
        (``now``: aware)."""
        try:
            raw = _unb64(token) if len(token) <= 200 else b""
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) < _HEAD.size + 1 + MAC_BYTES:
            raise LinkRefused(MALFORMED, "this is not a link dyzur made (cut short or altered?)")
        claim, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(claim)):
            raise LinkRefused(FORGED, "this link's signature does not match: it was not made here")
        version, expires_at, step, year, sequence = _HEAD.unpack_from(claim)
        person = claim[_HEAD.size :].decode("ascii", "replace")
        if version != VERSION or not _PERSON.fullmatch(person):
            raise LinkRefused(MALFORMED, "this link is of a form dyzur no longer reads")
        expires = datetime.fromtimestamp(expires_at, UTC)
        if now >= expires:
            raise LinkRefused(EXPIRED, f"this link expired at {local_time(expires)}")
        return LinkClaim(
            ticket=f"DZ-{year}-{sequence:06d}",
            person=person,
            step=step,
            token_id=hashlib.sha256(claim).hexdigest()[:32],
            expires=expires,
        )
