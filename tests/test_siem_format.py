"""SIEM messages: exact output for a sample event, escaping of every hostile character, and
Hypothesis properties that no value can forge a line, a field or an element.

The RFC 5424 structured-data parser and the CEF parser below are written here, strictly from
the RFCs / the CEF rules, so the tests do not trust the formatter's own idea of its output.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.delivery.siem_format import cef, octet_counted, rfc5424, summary
from bridge.models import AuditEvent

HASH = "ce36863f51b6baf9d16397ffb3e9af506b284a816f72d487e55943c1fd974d6d"
PREV = "23352a67ac7ffc4b5d98023dc1a54ee507d4bf95dc1c4154045c5e2bbde73317"
NASTY = 'a"b\\c]d\ne\rf\x00g\u2028h'
# NASTY as a PARAM-VALUE on the wire: §6.3.3 escapes, then visible control escapes.
NASTY_SD = 'a\\"b\\\\c\\]d\\ne\\rf\\u0000g\\u2028h'
BOM = "\ufeff"


def sample(**changes) -> AuditEvent:
    fields = {
        "at": datetime(2026, 11, 23, 10, 0, 0, 250000, tzinfo=ZoneInfo("Europe/Warsaw")),
        "actor": "dyzur",
        "action": "ticket.opened",
        "outcome": "success",
        "client": "szpital-a",
        "asset": "srv-a1",
        "detail": {
            "ticket": "DZ-2026-000001",
            "category": "awaria",
            "rule": "host_down",
            "reaction_due": "2026-11-23T12:00:00+01:00",
        },
        "id": 1,
        "prev_hash": PREV,
        "hash": HASH,
    }
    fields.update(changes)
    return AuditEvent(**fields)


# --- a strict RFC 5424 parser -------------------------------------------------------------------

HEADER = re.compile(
    r"<(\d{1,3})>1 ([!-~]+) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) "
)
# SD-NAME: PRINTUSASCII except '=', SP, ']', '"' (33-126 without 34, 61, 93), 1 to 32 of them.
SD_NAME = re.compile(r"[!#-<>-\\^-~]{1,32}")
SD_ID = re.compile(r"[!#-<>-\\^-~]{1,32}")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class Malformed(ValueError):
    pass


def read_param_value(text: str, pos: int) -> tuple[str, int]:
    """The raw PARAM-VALUE starting after its opening quote; returns it and the position
    after the closing quote. ``"``, ``\\`` and ``]`` MUST be escaped (§6.3.3)."""
    start = pos
    while pos < len(text):
        ch = text[pos]
        if ch == "\\":
            if pos + 1 >= len(text):
                raise Malformed("backslash at the end")
            # \" \\ \] are escapes; before anything else the backslash is literal and the next
            # character an ordinary one: either way the pair is part of the value.
            pos += 2
        elif ch == '"':
            return text[start:pos], pos + 1
        elif ch == "]":
            raise Malformed(f"unescaped ] at {pos}")
        else:
            pos += 1
    raise Malformed("unterminated PARAM-VALUE")


def expect(text: str, pos: int, literal: str) -> int:
    if not text.startswith(literal, pos):
        raise Malformed(f"expected {literal!r} at {pos}: {text[pos : pos + 20]!r}")
    return pos + len(literal)


def parse_sd(text: str, pos: int) -> tuple[list[tuple[str, list[tuple[str, str]]]], int]:
    """STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT; params keep their raw (wire) values."""
    if text.startswith("-", pos):
        return [], pos + 1
    elements = []
    while text.startswith("[", pos):
        m = SD_ID.match(text, pos + 1)
        if not m:
            raise Malformed(f"bad SD-ID at {pos + 1}")
        sd_id, pos = m.group(), m.end()
        params = []
        while text.startswith(" ", pos):
            m = SD_NAME.match(text, pos + 1)
            if not m:
                raise Malformed(f"bad PARAM-NAME at {pos + 1}")
            pos = expect(text, m.end(), '="')
            raw, pos = read_param_value(text, pos)
            params.append((m.group(), raw))
        pos = expect(text, pos, "]")
        elements.append((sd_id, params))
    if not elements:
        raise Malformed(f"no STRUCTURED-DATA at {pos}")
    return elements, pos


class Syslog(NamedTuple):
    pri: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    elements: list[tuple[str, list[tuple[str, str]]]]
    msg: str | None


def parse_syslog(message: bytes) -> Syslog:
    text = message.decode("utf-8")  # strict: the whole message is valid UTF-8
    m = HEADER.match(text)
    if not m:
        raise Malformed(f"bad header: {text[:80]!r}")
    elements, pos = parse_sd(text, m.end())
    msg = None if pos == len(text) else text[expect(text, pos, " ") :]
    pri, ts, host, app, procid, msgid = m.groups()
    return Syslog(int(pri), ts, host, app, procid, msgid, elements, msg)


def rfc_unescape(raw: str) -> str:
    """§6.3.3 as a receiver applies it: \\" \\\\ \\] unescaped, any other backslash kept."""
    return re.sub(r'\\(["\\\]])', r"\1", raw)


SHORT = {"n": "\n", "r": "\r", "t": "\t"}


def decode(raw: str, plain: str, short: str) -> str:
    """One pass over a wire value: ``\\`` + one of ``plain`` is that character, ``\\`` + one of
    ``short`` a control character, ``\\uXXXX`` any; any other backslash is an error."""
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1 : i + 2]
        if nxt and nxt in plain:
            out.append(nxt)
            i += 2
        elif nxt and nxt in short:
            out.append(SHORT[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9a-f]{4}", raw[i + 2 : i + 6]):
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise Malformed(f"unknown escape {raw[i : i + 6]!r}")
    return "".join(out)


def decode_sd(raw: str) -> str:
    return decode(raw, plain='"\\]', short="nrt")


def visible(text: str) -> str:
    """What an RFC-only receiver shows: control characters as escape text, the rest as is."""
    short = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return CONTROL.sub(lambda m: short.get(m.group()) or f"\\u{ord(m.group()):04x}", text)


def header_field(value: str, limit: int) -> str:
    return "".join(c if 33 <= ord(c) <= 126 else "_" for c in value[:limit]) or "-"


def sd_name(key: str) -> str:
    return "".join(c if 33 <= ord(c) <= 126 and c not in '=]"' else "_" for c in key[:32]) or "_"


SUMMARY_TOKEN = re.compile(r'(?:([a-z]+)=)?(?:"((?:[^"\\]|\\.)*)"|([^\s"=\\]+))')


def parse_summary(text: str) -> list[tuple[str | None, str]]:
    """``word word key=word key="quoted \\"value\\""`` -> [(key or None, value)]."""
    tokens, pos = [], 0
    while True:
        m = SUMMARY_TOKEN.match(text, pos)
        if not m:
            raise Malformed(f"bad summary token at {pos}: {text[pos:]!r}")
        key, quoted, bare = m.groups()
        tokens.append((key, bare if quoted is None else decode(quoted, '"\\', "nrt")))
        pos = m.end()
        if pos == len(text):
            return tokens
        pos = expect(text, pos, " ")


# --- a strict CEF parser ------------------------------------------------------------------------


def unescaped(text: str, char: str) -> list[int]:
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == char:
            found.append(i)
        i += 1
    return found


def parse_cef(record: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Seven header fields (decoded) and the extension pairs (decoded, in order)."""
    # The text "CEF:0|" may appear again when a value ends in "CEF:0" just before a delimiter
    # (an outcome of "CEF:0", say); what keeps fields from being forged is that the record
    # starts with the header and has exactly seven unescaped pipes, checked next.
    if not record.startswith("CEF:0|"):
        raise Malformed("no CEF:0| header at the start")
    pipes = unescaped(record, "|")
    if len(pipes) != 7:
        raise Malformed(f"{len(pipes)} unescaped pipes")
    bounds = [-1, *pipes]
    header = [decode(record[a + 1 : b], "\\|", "nr") for a, b in zip(bounds, pipes, strict=False)]
    ext = record[pipes[-1] + 1 :]
    pairs: list[tuple[str, str]] = []
    key, value_start = None, 0
    for eq in unescaped(ext, "="):
        m = re.search(r"[A-Za-z0-9_]+$", ext[:eq])
        if not m:
            raise Malformed(f"no key before = at {eq}")
        if key is None:
            if m.start() != 0:
                raise Malformed("text before the first key")
        else:
            if ext[m.start() - 1 : m.start()] != " ":
                raise Malformed(f"key {m.group()} not after a space")
            pairs.append((key, ext[value_start : m.start() - 1]))
        key, value_start = m.group(), eq + 1
    if key is not None:
        pairs.append((key, ext[value_start:]))
    return header, [(k, decode(v, "\\=|", "nr")) for k, v in pairs]


def cef_record(message: bytes) -> str:
    parsed = parse_syslog(message)
    assert parsed.elements == [] and parsed.msg is not None
    return parsed.msg


# --- exact output -------------------------------------------------------------------------------

SAMPLE_SUMMARY = (
    "ticket.opened DZ-2026-000001 client=szpital-a asset=srv-a1 actor=dyzur outcome=success"
)


def test_rfc5424_sample_is_exact():
    expected = (
        "<109>1 2026-11-23T09:00:00.250000Z bridge-1.example.pl dyzur - ticket.opened "
        f'[dyzur@32473 id="1" action="ticket.opened" outcome="success" actor="dyzur" '
        f'client="szpital-a" asset="srv-a1" hash="{HASH}" prev_hash="{PREV}"]'
        '[detail@32473 ticket="DZ-2026-000001" category="awaria" rule="host_down" '
        'reaction_due="2026-11-23T12:00:00+01:00"] '
        f"\ufeff{SAMPLE_SUMMARY}"
    )
    assert rfc5424(sample(), "bridge-1.example.pl") == expected.encode("utf-8")


def test_cef_sample_is_exact():
    expected = (
        "<109>1 2026-11-23T09:00:00.250000Z bridge-1.example.pl dyzur - ticket.opened - "
        f"CEF:0|dyzur|dyzur|1|ticket.opened|{SAMPLE_SUMMARY}|3|"
        "rt=1795424400250 externalId=1 act=ticket.opened outcome=success suser=dyzur "
        "cs1Label=client cs1=szpital-a cs2Label=asset cs2=srv-a1 "
        f"cs3Label=hash cs3={HASH} cs4Label=prev_hash cs4={PREV} "
        'msg={"ticket":"DZ-2026-000001","category":"awaria","rule":"host_down",'
        '"reaction_due":"2026-11-23T12:00:00+01:00"}'
    )
    assert cef(sample(), "bridge-1.example.pl") == expected.encode("utf-8")


def test_a_failure_is_a_warning():
    event = sample(outcome="refused")
    assert rfc5424(event, "h").startswith(b"<108>1 ")  # 13 * 8 + 4
    assert b"|ticket.opened|" in cef(event, "h")
    assert cef(event, "h").startswith(b"<108>1 ")
    assert b"outcome=refused|7|rt=" in cef(event, "h")


def test_options_app_procid_pen_and_cef_header():
    message = rfc5424(sample(), "h", app="dyzur-bridge", procid="4242", pen=99999)
    assert message.startswith(b"<109>1 2026-11-23T09:00:00.250000Z h dyzur-bridge 4242 ")
    assert b"[dyzur@99999 " in message and b"[detail@99999 " in message
    record = cef(sample(), "h", vendor="Acme", product="dyzur bridge", version="2.1")
    assert b" - CEF:0|Acme|dyzur bridge|2.1|ticket.opened|" in record


@pytest.mark.parametrize("pen", [0, -1, True, "32473"])
def test_a_bad_pen_is_refused(pen):
    with pytest.raises(ValueError, match="pen"):
        rfc5424(sample(), "h", pen=pen)


def test_timestamp_is_utc_with_microseconds():
    plus14 = timezone(timedelta(hours=14))
    event = sample(at=datetime(2027, 1, 1, 5, 6, 7, 89, tzinfo=plus14))
    assert b" 2026-12-31T15:06:07.000089Z " in rfc5424(event, "h")
    assert b"|3|rt=1798729567000 " in cef(event, "h")  # milliseconds, the microseconds dropped


def test_a_naive_time_is_refused_naming_the_field():
    event = sample(at=datetime(2026, 11, 23, 9, 0))
    with pytest.raises(ValueError, match=r"AuditEvent\.at"):
        rfc5424(event, "h")
    with pytest.raises(ValueError, match=r"AuditEvent\.at"):
        cef(event, "h")


def test_unset_fields_and_empty_detail_are_left_out():
    event = sample(client=None, asset=None, id=None, hash=None, prev_hash=None, detail={})
    message = rfc5424(event, "h").decode()
    assert message == (
        "<109>1 2026-11-23T09:00:00.250000Z h dyzur - ticket.opened "
        '[dyzur@32473 action="ticket.opened" outcome="success" actor="dyzur"] '
        "\ufeffticket.opened actor=dyzur outcome=success"
    )
    record = cef(event, "h").decode()
    assert record.endswith(
        "|ticket.opened actor=dyzur outcome=success|3|"
        "rt=1795424400250 act=ticket.opened outcome=success suser=dyzur"
    )


# --- escaping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["actor", "client", "asset"])
def test_hostile_values_are_escaped_in_structured_data(field):
    message = rfc5424(sample(**{field: NASTY}), "h")
    for raw in (b"\n", b"\r", b"\x00", "\u2028".encode()):
        assert raw not in message
    text = message.decode()
    assert f' {field}="{NASTY_SD}"' in text
    elements, msg = parse_syslog(message)[-2:]
    params = dict(elements[0][1])
    assert decode_sd(params[field]) == NASTY
    assert rfc_unescape(params[field]) == 'a"b\\c]d\\ne\\rf\\u0000g\\u2028h'
    # In the summary the value is quoted; its backslash doubled and its controls made visible.
    assert f'{field}="a\\"b\\\\c]d\\ne\\rf\\u0000g\\u2028h"' in msg
    assert dict(parse_summary(msg.removeprefix(BOM)))[field] == NASTY


def test_hostile_detail_keys_and_values_are_escaped():
    event = sample(detail={NASTY: NASTY, "ok": "x]y", "tab": "a\tb\x7fc\x85d\u2029e"})
    message = rfc5424(event, "h")
    elements = parse_syslog(message).elements
    assert elements[1][0] == "detail@32473"
    # a"b\c]d<LF>e<CR>f<NUL>g<LS>h: " ] and the controls become _, the backslash stays.
    assert elements[1][1] == [
        ("a_b\\c_d_e_f_g_h", NASTY_SD),
        ("ok", "x\\]y"),
        ("tab", "a\\tb\\u007fc\\u0085d\\u2029e"),
    ]


def test_detail_key_is_cut_to_32_and_clashes_are_numbered():
    long = "k" * 40
    event = sample(detail={long: 1, "k" * 32: 2, "a b": 3, "a=b": 4, "": 5, "a_b": 6})
    elements = parse_syslog(rfc5424(event, "h")).elements
    assert elements[1][1] == [
        ("k" * 32, "1"),
        ("k" * 30 + "~2", "2"),
        ("a_b", "3"),
        ("a_b~2", "4"),
        ("_", "5"),
        ("a_b~3", "6"),
    ]


def test_detail_values_are_stringified():
    detail = {
        "none": None,
        "yes": True,
        "no": False,
        "n": 7,
        "x": 1.5,
        "list": ["a", 1, None],
        "map": {"k": "v", "deep": [True]},
        "day": date(2026, 11, 23),
        "when": datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    }
    elements = parse_syslog(rfc5424(sample(detail=detail), "h")).elements
    assert [(k, decode_sd(v)) for k, v in elements[1][1]] == [
        ("yes", "true"),
        ("no", "false"),
        ("n", "7"),
        ("x", "1.5"),
        ("list", '["a",1,null]'),
        ("map", '{"k":"v","deep":[true]}'),
        ("day", "2026-11-23"),
        ("when", "2026-11-23T09:00:00+00:00"),
    ]
    record = cef(sample(detail=detail), "h").decode()
    assert record.endswith(
        'msg={"none":null,"yes":true,"no":false,"n":7,"x":1.5,"list":["a",1,null],'
        '"map":{"k":"v","deep":[true]},"day":"2026-11-23","when":"2026-11-23T09:00:00+00:00"}'
    )


def test_header_fields_are_sanitised():
    event = sample(action="ticket opened\n" + "x" * 40)
    message = rfc5424(event, "host name\n\x00é]", app="", procid="p" * 200)
    parsed = parse_syslog(message)
    assert parsed.hostname == "host_name___]"
    assert parsed.app == "-"
    assert parsed.procid == "p" * 128
    assert parsed.msgid == "ticket_opened_" + "x" * 18
    assert rfc5424(sample(), "h" * 300).split(b" ")[2] == b"h" * 255
    assert rfc5424(sample(), "").split(b" ")[2] == b"-"
    assert rfc5424(sample(), "h", app="a" * 60).split(b" ")[3] == b"a" * 48


def test_summary_quotes_what_could_fake_a_pair():
    event = sample(actor="Jan Kowalski", outcome="failure", asset="srv outcome=success", client="")
    assert summary(event) == (
        'ticket.opened DZ-2026-000001 client="" asset="srv outcome=success" '
        'actor="Jan Kowalski" outcome=failure'
    )
    tokens = parse_summary(summary(event))
    assert [k for k, _ in tokens].count("outcome") == 1
    assert dict(tokens)["outcome"] == "failure"


def test_cef_escaping():
    event = sample(actor=NASTY + "=|", detail={"k": "v=1|\n"})
    record = cef(event, "h", vendor="Ac|me\\", product="p\nq").decode()
    assert "\n" not in record and "\r" not in record and "\x00" not in record
    assert "|Ac\\|me\\\\|p\\nq|" in record
    assert ' suser=a"b\\\\c]d\\ne\\rf\\u0000g\\u2028h\\=\\| cs1Label=' in record
    assert record.endswith('msg={"k":"v\\=1\\|\\\\n"}')  # JSON's own \n, its backslash escaped
    header, ext = parse_cef(cef_record(record.encode()))
    assert header[1:3] == ["Ac|me\\", "p\nq"]
    assert dict(ext)["suser"] == NASTY + "=|"
    assert json.loads(dict(ext)["msg"]) == {"k": "v=1|\n"}


# --- octet counting -----------------------------------------------------------------------------


def test_octet_counted_counts_bytes_not_characters():
    assert octet_counted(b"abc") == b"3 abc"
    assert octet_counted(b"") == b"0 "
    message = "zażółć 😀".encode()
    assert len("zażółć 😀") == 8 and len(message) == 15
    assert octet_counted(message) == b"15 " + message
    framed = octet_counted(rfc5424(sample(actor="Łukasz Żółć"), "h"))
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) and rest.startswith(b"<109>1 ")


def test_octet_counted_refuses_text():
    with pytest.raises(TypeError, match="bytes"):
        octet_counted("abc")  # type: ignore[arg-type]


# --- the parsers themselves ---------------------------------------------------------------------


def test_sd_parser_reads_the_rfc_example_and_refuses_malformed_data():
    rfc_example = (
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        '[examplePriority@32473 class="high"]'
    )
    elements, msg = parse_syslog(rfc_example.encode())[-2:]
    assert elements == [
        ("exampleSDID@32473", [("iut", "3"), ("eventSource", "Application"), ("eventID", "1011")]),
        ("examplePriority@32473", [("class", "high")]),
    ]
    assert msg is None
    for bad in ('[a x="]"]', '[a x="\\"]', "[a x=y]", '[a  x="y"]', '[a x="y"', "[]", "x"):
        with pytest.raises(Malformed):
            parse_syslog(f"<1>1 - h a p m {bad}".encode())


def test_cef_parser_refuses_forgery():
    with pytest.raises(Malformed):
        parse_cef("CEF:0|a|b|c|d|e|3|suser=x|y")  # eighth pipe
    with pytest.raises(Malformed):
        parse_cef("CEF:0|a|b|c|d|e|3|msg=CEF:0|x")  # a second header
    _, ext = parse_cef("CEF:0|a|b|c|d|e|3|suser=x y\\= act\\=z cs1=\\\\")
    assert ext == [("suser", "x y= act=z"), ("cs1", "\\")]


# --- properties ---------------------------------------------------------------------------------

# Quotes, brackets, backslashes, separators, controls, line breaks, a BOM, lone surrogates, emoji.
HOSTILE = '"\\][=| \n\r\t\x00\x1b\x7f\x85\u2028\u2029\ufeff@~é😀\ud800\udfff'
texts = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(HOSTILE)),
    st.text(alphabet=st.characters(exclude_categories=())),  # lone surrogates too
)
optional = st.none() | texts
json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), texts, st.lists(texts | st.integers(), max_size=3)
)
events = st.builds(
    AuditEvent,
    at=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, ZoneInfo("Europe/Warsaw"), timezone(-timedelta(hours=9))]),
    ),
    actor=texts,
    action=texts,
    outcome=st.just("success") | texts,
    client=optional,
    asset=optional,
    detail=st.dictionaries(texts, json_values, max_size=5),
    id=st.none() | st.integers(min_value=0),
    prev_hash=optional,
    hash=optional,
)
PROPERTY = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def event_values(event: AuditEvent) -> list[tuple[str, str]]:
    fields = [
        ("id", event.id),
        ("action", event.action),
        ("outcome", event.outcome),
        ("actor", event.actor),
        ("client", event.client),
        ("asset", event.asset),
        ("hash", event.hash),
        ("prev_hash", event.prev_hash),
    ]
    return [(k, str(v)) for k, v in fields if v is not None]


def detail_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def assert_one_clean_line(message: bytes) -> str:
    assert b"\n" not in message and b"\r" not in message and b"\x00" not in message
    text = message.decode("utf-8")
    assert not CONTROL.search(text), CONTROL.search(text)
    return text


def assert_summary(msg: str, event: AuditEvent) -> None:
    tokens = parse_summary(msg)
    expected = [(None, event.action)]
    if event.detail.get("ticket") is not None:
        expected.append((None, str(event.detail["ticket"])))
    expected += [
        (k, v) for k, v in [("client", event.client), ("asset", event.asset)] if v is not None
    ]
    expected += [("actor", event.actor), ("outcome", event.outcome)]
    assert tokens == expected


@PROPERTY
@given(event=events, hostname=texts)
def test_no_value_can_forge_a_line_field_or_element_in_rfc5424(event, hostname):
    message = rfc5424(event, hostname)
    assert_one_clean_line(message)
    pri, ts, host, app, procid, msgid, elements, msg = parse_syslog(message)
    assert pri == (109 if event.outcome == "success" else 108)
    assert ts == event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert (host, app, procid) == (header_field(hostname, 255), "dyzur", "-")
    assert msgid == header_field(event.action, 32)

    (sd_id, params), *rest = elements
    assert sd_id == "dyzur@32473"
    assert [name for name, _ in params] == [name for name, _ in event_values(event)]
    for (_, raw), (_, value) in zip(params, event_values(event), strict=True):
        assert decode_sd(raw) == value  # exactly the original
        assert rfc_unescape(raw) == visible(value)  # what an RFC-only receiver shows

    texts_ = [t for t in map(detail_text, event.detail.values()) if t is not None]
    if texts_:
        [(detail_id, detail_params)] = rest
        assert detail_id == "detail@32473"
        names = [name for name, _ in detail_params]
        assert len(set(names)) == len(names)
        assert [decode_sd(raw) for _, raw in detail_params] == texts_
        wanted = [sd_name(k) for k, v in event.detail.items() if v is not None]
        if len(set(wanted)) == len(wanted):  # no clash: each key only sanitised
            assert names == wanted
    else:
        assert rest == []

    assert msg is not None and msg.startswith(BOM)
    assert_summary(msg.removeprefix(BOM), event)


@PROPERTY
@given(event=events, hostname=texts, vendor=texts, product=texts, version=texts)
def test_no_value_can_forge_a_line_field_or_extension_in_cef(
    event, hostname, vendor, product, version
):
    message = cef(event, hostname, vendor=vendor, product=product, version=version)
    assert_one_clean_line(message)
    pri, _, host, _, _, msgid, elements, record = parse_syslog(message)
    assert pri == (109 if event.outcome == "success" else 108)
    assert host == header_field(hostname, 255) and msgid == header_field(event.action, 32)
    assert elements == [] and record is not None and not record.startswith(BOM)

    header, ext = parse_cef(record)
    severity = "3" if event.outcome == "success" else "7"
    assert header[:5] == ["CEF:0", vendor, product, version, event.action]
    assert header[6] == severity
    assert_summary(header[5], event)

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = [("rt", str((event.at - epoch) // timedelta(milliseconds=1)))]
    if event.id is not None:
        expected.append(("externalId", str(event.id)))
    expected += [("act", event.action), ("outcome", event.outcome), ("suser", event.actor)]
    for n, (label, value) in enumerate(
        [
            ("client", event.client),
            ("asset", event.asset),
            ("hash", event.hash),
            ("prev_hash", event.prev_hash),
        ],
        start=1,
    ):
        if value is not None:
            expected += [(f"cs{n}Label", label), (f"cs{n}", value)]
    if event.detail:
        expected.append(
            ("msg", json.dumps(event.detail, separators=(",", ":"), ensure_ascii=False))
        )
    assert ext == expected
    if event.detail:
        assert json.loads(dict(ext)["msg"]) == event.detail


@PROPERTY
@given(event=events, hostname=texts)
def test_octet_counted_frames_any_message(event, hostname):
    for message in (rfc5424(event, hostname), cef(event, hostname)):
        framed = octet_counted(message)
        length, space, rest = framed.partition(b" ")
        assert space == b" " and length.isdigit() and int(length) == len(rest)
        assert rest == message
