"""Audit events as SIEM messages: syslog RFC 5424 with structured data, or ArcSight CEF.

Both formats put one event on one line, and nothing an actor, a client, an asset or a detail
value contains can start another line, another field or another element:

* RFC 5424 PARAM-VALUEs escape ``\\``, ``"`` and ``]`` (RFC 5424 §6.3.3). In addition every
  control character — C0 (U+0000-U+001F), DEL, C1 (U+0080-U+009F, NEL among them), the line and
  paragraph separators U+2028/U+2029 and lone surrogates — is written as visible text: ``\\n``
  for LF, ``\\r`` for CR, ``\\t`` for TAB and ``\\uXXXX`` otherwise. RFC 5424 §6.3.3 says a
  backslash before any other character is kept as it is, so a receiver that knows only the RFC
  shows these escapes as the literal text ``\\n``, ``\\u0000``, …, and a receiver that writes
  line by line never sees a raw line break. Read on the wire in one pass (``\\\\``, ``\\"``,
  ``\\]``, ``\\n``, ``\\r``, ``\\t``, ``\\uXXXX``) a value decodes to exactly the original text;
  only a reader that first applies the RFC unescaping and then looks at the result can no longer
  tell an escaped LF from the two characters ``\\`` ``n`` that were in the value.
* The human summary in MSG quotes any value that is empty or holds a space, ``=``, ``"``, a
  backslash or a control character (``actor="Jan Kowalski"``), so a value cannot fake another
  ``key=value`` pair to a SIEM that splits MSG into pairs.
* CEF header fields escape ``\\`` and ``|``; extension values escape ``\\`` and ``=``, write LF
  and CR as ``\\n`` / ``\\r`` (the CEF rules) and other control characters as ``\\uXXXX``. They
  also escape ``|`` (CEF does not require it in extensions) so that a record holds exactly seven
  unescaped pipes and the text ``CEF:0|`` exactly once, however the values read.

Header fields (HOSTNAME, APP-NAME, PROCID, MSGID) cannot be escaped: anything outside printable
US-ASCII becomes ``_``, the field is cut to its RFC length and an empty one becomes ``-``.

Standard library only; it formats and frames, the sender does the I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.models import AuditEvent

__all__ = ["cef", "octet_counted", "rfc5424"]

FACILITY_LOG_AUDIT = 13
SEVERITY_NOTICE = 5
SEVERITY_WARNING = 4
CEF_SEVERITY_SUCCESS = 3
CEF_SEVERITY_FAILURE = 7
EXAMPLE_PEN = 32473  # RFC 5612: the private enterprise number for documentation
BOM = "\ufeff"
NILVALUE = "-"

# RFC 5424 §6: header field lengths.
HOSTNAME_MAX = 255
APP_NAME_MAX = 48
PROCID_MAX = 128
MSGID_MAX = 32
SD_NAME_MAX = 32

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CEF_SHORT = {"\n": "\\n", "\r": "\\r"}  # the only control escapes CEF defines


def _is_control(ch: str) -> bool:
    """A character that must never reach the wire as itself."""
    o = ord(ch)
    return (
        o < 0x20
        or 0x7F <= o <= 0x9F
        or o in (0x2028, 0x2029)
        or 0xD800 <= o <= 0xDFFF  # a lone surrogate: not even encodable as UTF-8
    )


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape_control(ch: str, short: Mapping[str, str] = _SHORT) -> str:
    return short.get(ch) or f"\\u{ord(ch):04x}"


def _escape_controls(text: str, short: Mapping[str, str] = _SHORT) -> str:
    """Every control character as visible text: ``\\n``, ``\\r``, ``\\t`` or ``\\uXXXX``."""
    return _CONTROL.sub(lambda m: _escape_control(m.group(), short), text)


# --- RFC 5424 --------------------------------------------------------------------------------


def _header_field(value: str, limit: int) -> str:
    """A header field: PRINTUSASCII (33-126) only, at most ``limit`` characters, never empty."""
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value[:limit])
    return cleaned or NILVALUE


def _sd_name(value: str) -> str:
    """An SD-NAME: printable US-ASCII except ``=``, space, ``]`` and ``"``; 1 to 32 characters."""
    cleaned = "".join(
        ch if 33 <= ord(ch) <= 126 and ch not in '=]"' else "_" for ch in value[:SD_NAME_MAX]
    )
    return cleaned or "_"


def _param_value(value: str) -> str:
    """A PARAM-VALUE: ``\\``, ``"``, ``]`` escaped (§6.3.3), control characters made visible."""
    out = []
    for ch in value:
        if ch in '\\"]':
            out.append("\\" + ch)
        elif _is_control(ch):
            out.append(_escape_control(ch))
        else:
            out.append(ch)
    return "".join(out)


def _timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with microseconds: ``2026-11-23T09:00:00.000000Z``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"AuditEvent.at must be timezone-aware, got naive {at.isoformat()}")
    u = at.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T"
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"
    )


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _detail_text(value: Any) -> str | None:
    """A detail value as text: None is left out, booleans are true/false, containers are JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return _compact_json(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _detail_params(detail: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Detail items as (SD-NAME, text); names that clash once sanitised get ``~2``, ``~3``, …"""
    params: list[tuple[str, str]] = []
    taken: set[str] = set()
    for key, value in detail.items():
        text = _detail_text(value)
        if text is None:
            continue
        name = _sd_name(str(key))
        n = 1
        while name in taken:
            n += 1
            suffix = f"~{n}"
            name = _sd_name(str(key))[: SD_NAME_MAX - len(suffix)] + suffix
        taken.add(name)
        params.append((name, text))
    return params


def _event_params(event: AuditEvent) -> list[tuple[str, str]]:
    fields = (
        ("id", event.id),
        ("action", event.action),
        ("outcome", event.outcome),
        ("actor", event.actor),
        ("client", event.client),
        ("asset", event.asset),
        ("hash", event.hash),
        ("prev_hash", event.prev_hash),
    )
    return [(name, str(value)) for name, value in fields if value is not None]


def _sd_element(sd_id: str, params: list[tuple[str, str]]) -> str:
    return "[" + sd_id + "".join(f' {n}="{_param_value(v)}"' for n, v in params) + "]"


def _pri(event: AuditEvent) -> int:
    severity = SEVERITY_NOTICE if event.outcome == "success" else SEVERITY_WARNING
    return FACILITY_LOG_AUDIT * 8 + severity


def _header(event: AuditEvent, hostname: str, app: str, procid: str) -> str:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID`` (no trailing space)."""
    return " ".join(
        (
            f"<{_pri(event)}>1",
            _timestamp(event.at),
            _header_field(hostname, HOSTNAME_MAX),
            _header_field(app, APP_NAME_MAX),
            _header_field(procid, PROCID_MAX),
            _header_field(event.action, MSGID_MAX),
        )
    )


def _check_pen(pen: int) -> None:
    if isinstance(pen, bool) or not isinstance(pen, int) or pen <= 0:
        raise ValueError(f"pen must be a positive private enterprise number, got {pen!r}")


# --- the human summary -------------------------------------------------------------------------

_BARE = re.compile(r'[^\s"=\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+')


def _token(value: str) -> str:
    """A summary value: bare when it is a plain word, else quoted with ``\\`` and ``"`` escaped."""
    if _BARE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _escape_controls(escaped) + '"'


def summary(event: AuditEvent) -> str:
    """One line for people, e.g.
    ``ticket.opened DZ-2026-000001 client=szpital-a asset=srv-a1 actor=dyzur outcome=success``.

    The ticket number comes from ``detail["ticket"]`` when there is one. The result holds no
    control character.
    """
    parts = [_token(event.action)]
    ticket = event.detail.get("ticket")
    if ticket is not None:
        parts.append(_token(str(ticket)))
    if event.client is not None:
        parts.append("client=" + _token(event.client))
    if event.asset is not None:
        parts.append("asset=" + _token(event.asset))
    parts.append("actor=" + _token(event.actor))
    parts.append("outcome=" + _token(event.outcome))
    return " ".join(parts)


# --- the public functions ----------------------------------------------------------------------


def rfc5424(
    event: AuditEvent,
    hostname: str,
    *,
    app: str = "dyzur",
    procid: str = "-",
    pen: int = EXAMPLE_PEN,
) -> bytes:
    """One RFC 5424 message for one audit event, UTF-8, without framing.

    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [dyzur@PEN ...][detail@PEN ...] BOM MSG``:
    facility 13 (log audit), severity 5 (notice) for outcome ``success`` and 4 (warning)
    otherwise; MSGID is the action. The ``dyzur`` element holds id, action, outcome, actor,
    client, asset, hash and prev_hash (those that are set); the ``detail`` element holds the
    detail items that are not None and is left out when there are none. The message never
    contains a raw LF, CR or NUL.
    """
    _check_pen(pen)
    sd = _sd_element(f"dyzur@{pen}", _event_params(event))
    detail = _detail_params(event.detail)
    if detail:
        sd += _sd_element(f"detail@{pen}", detail)
    line = f"{_header(event, hostname, app, procid)} {sd} {BOM}{summary(event)}"
    return line.encode("utf-8")


def _cef_header_field(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("|", "\\|")
    return _escape_controls(escaped, _CEF_SHORT)


def _cef_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("=", "\\=").replace("|", "\\|")
    return _escape_controls(escaped, _CEF_SHORT)


def _epoch_ms(at: datetime) -> int:
    _timestamp(at)  # refuses a naive datetime with the same message
    return (at - _EPOCH) // timedelta(milliseconds=1)


def _cef_extensions(event: AuditEvent) -> list[tuple[str, str]]:
    ext: list[tuple[str, str]] = [("rt", str(_epoch_ms(event.at)))]
    if event.id is not None:
        ext.append(("externalId", str(event.id)))
    ext += [("act", event.action), ("outcome", event.outcome), ("suser", event.actor)]
    custom = (
        ("client", event.client),
        ("asset", event.asset),
        ("hash", event.hash),
        ("prev_hash", event.prev_hash),
    )
    for n, (label, value) in enumerate(custom, start=1):
        if value is not None:
            ext += [(f"cs{n}Label", label), (f"cs{n}", value)]
    if event.detail:
        ext.append(("msg", _compact_json(event.detail)))
    return ext


def cef(
    event: AuditEvent,
    hostname: str,
    *,
    vendor: str = "dyzur",
    product: str = "dyzur",
    version: str = "1",
    app: str = "dyzur",
    procid: str = "-",
) -> bytes:
    """One audit event as an ArcSight CEF:0 record inside an RFC 5424 message, UTF-8.

    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - CEF:0|vendor|product|version|action|
    summary|severity|extensions`` with CEF severity 3 for success and 7 otherwise. Extensions:
    rt (epoch milliseconds), externalId, act, outcome, suser, cs1 client, cs2 asset, cs3 hash,
    cs4 prev_hash (each with its csNLabel) and msg with the detail as compact JSON; those with
    no value are left out. No BOM: CEF receivers read the MSG as it is.
    """
    severity = CEF_SEVERITY_SUCCESS if event.outcome == "success" else CEF_SEVERITY_FAILURE
    head = "|".join(
        _cef_header_field(f)
        for f in ("CEF:0", vendor, product, version, event.action, summary(event), str(severity))
    )
    ext = " ".join(f"{k}={_cef_value(v)}" for k, v in _cef_extensions(event))
    line = f"{_header(event, hostname, app, procid)} {NILVALUE} {head}|{ext}"
    return line.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing, ``MSG-LEN SP MSG``, as RFC 5425 uses over TLS.

    The length counts bytes, not characters.
    """
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError(f"octet_counted frames bytes, got {type(message).__name__}")
    data = bytes(message)
    return str(len(data)).encode("ascii") + b" " + data
