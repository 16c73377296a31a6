"""The Nagios plugin output parser: states, text, long output, perfdata, samples."""

from __future__ import annotations

import math
import os
import socket
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.ssh.nagios import (
    CheckResult,
    CheckState,
    PerfData,
    Range,
    parse,
    parse_range,
    to_samples,
)

PLUGINS = Path("/usr/lib/nagios/plugins")


def need_plugin(name: str) -> str:
    """A monitoring-plugins binary: skip without it, except under CI where it must exist."""
    path = PLUGINS / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"{path} is required under CI (apt-get install monitoring-plugins-basic)")
        pytest.skip(f"{path} not installed")
    return str(path)


def run_plugin(*argv: str) -> CheckResult:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**os.environ, "LC_ALL": "C"}
    )
    return parse(proc.returncode, proc.stdout)


def only(result: CheckResult) -> PerfData:
    assert len(result.perfdata) == 1, result
    return result.perfdata[0]


# --- exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (0, CheckState.OK),
        (1, CheckState.WARNING),
        (2, CheckState.CRITICAL),
        (3, CheckState.UNKNOWN),
        (4, CheckState.UNKNOWN),
        (-1, CheckState.UNKNOWN),
        (127, CheckState.UNKNOWN),
        (255, CheckState.UNKNOWN),
    ],
)
def test_exit_codes(code: int, state: CheckState) -> None:
    result = parse(code, "SOME TEXT")
    assert result.state is state
    assert result.text == "SOME TEXT"


def test_state_values() -> None:
    assert [int(s) for s in CheckState] == [0, 1, 2, 3]


# --- text, long output and where perfdata is ----------------------------------------------


def test_guidelines_single_line_no_perfdata() -> None:
    result = parse(0, "DISK OK - free space: / 3326 MB (56%);")
    assert result.text == "DISK OK - free space: / 3326 MB (56%);"
    assert result.long_output == ""
    assert result.perfdata == []
    assert result.problems == []


def test_guidelines_single_line_with_perfdata() -> None:
    result = parse(0, "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n")
    assert result.text == "DISK OK - free space: / 3326 MB (56%);"
    item = only(result)
    mb = 1024**2
    assert item == PerfData(
        label="/",
        value=2643 * mb,
        unit="B",
        warn=5948 * mb,
        crit=5958 * mb,
        min=0.0,
        max=5968 * mb,
        uom="MB",
        warn_raw="5948",
        crit_raw="5958",
        min_raw="0",
        max_raw="5968",
        warn_range=Range(0.0, 5948 * mb),
        crit_range=Range(0.0, 5958 * mb),
    )
    assert result.problems == []


GUIDELINES_MULTILINE = """\
DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
/ 15272 MB (77%);
/boot 68 MB (69%);
/home 69357 MB (27%);
/var/log 819 MB (84%); | /boot=68MB;88;93;0;98
/home=69357MB;253404;253409;0;253414
/var/log=818MB;970;975;0;980
"""


def test_guidelines_multiline_perfdata_on_first_and_later_lines() -> None:
    result = parse(0, GUIDELINES_MULTILINE)
    assert result.state is CheckState.OK
    assert result.text == "DISK OK - free space: / 3326 MB (56%);"
    assert result.long_output == (
        "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%);"
    )
    mb = 1024**2
    assert [(p.label, p.value, p.max) for p in result.perfdata] == [
        ("/", 2643 * mb, 5968 * mb),
        ("/boot", 68 * mb, 98 * mb),
        ("/home", 69357 * mb, 253414 * mb),
        ("/var/log", 818 * mb, 980 * mb),
    ]
    assert result.problems == []


def test_crlf_is_handled_like_lf() -> None:
    result = parse(0, GUIDELINES_MULTILINE.replace("\n", "\r\n"))
    assert result == parse(0, GUIDELINES_MULTILINE)


def test_perfdata_only_in_long_output() -> None:
    result = parse(1, "WARNING: slow\nline two\nline three|t=2s;1;5")
    assert result.text == "WARNING: slow"
    assert result.long_output == "line two\nline three"
    assert [(p.label, p.value) for p in result.perfdata] == [("t", 2.0)]


def test_long_output_without_perfdata() -> None:
    result = parse(2, "CRITICAL: down\ndetail 1\ndetail 2\n")
    assert result.text == "CRITICAL: down"
    assert result.long_output == "detail 1\ndetail 2"
    assert result.perfdata == []


@pytest.mark.parametrize("output", ["", "\n", "|", " | ", "\n|", "|\n|", "\r\n\r\n"])
def test_empty_and_bare_pipes(output: str) -> None:
    result = parse(0, output)
    assert result.state is CheckState.OK
    assert result.text == ""
    assert result.long_output == ""
    assert result.perfdata == []
    assert result.problems == []


def test_only_the_first_pipe_splits_the_first_line() -> None:
    result = parse(0, "TEXT | a=1 | b=2")
    assert result.text == "TEXT"
    # A later "|" on the first line is just a malformed item; the items around it stay.
    assert [p.label for p in result.perfdata] == ["a", "b"]
    assert result.problems == ["no '=' in '|'"]


def test_huge_line() -> None:
    perf = " ".join(f"m{i}=1" for i in range(100_000))
    result = parse(0, "OK " + "x" * 1_000_000 + " | " + perf + " " + "y" * 1_000_000)
    assert result.text.startswith("OK xxx")
    assert len(result.perfdata) == 500  # MAX_ITEMS
    assert any("more than 500" in p for p in result.problems)


def test_many_problems_are_capped() -> None:
    result = parse(0, "OK | " + " ".join(["junk"] * 1000))
    assert len(result.problems) == 51
    assert result.problems[-1] == "... and 950 more problem(s)"


# --- labels --------------------------------------------------------------------------------


def test_quoted_label_with_spaces() -> None:
    assert only(parse(0, "OK | 'free space'=5")).label == "free space"


def test_quoted_label_with_equals() -> None:
    assert only(parse(0, "OK | 'a=b c'=5;1;2")).label == "a=b c"


def test_quoted_label_with_doubled_quotes() -> None:
    item = only(parse(0, "OK | 'it''s ''quoted'''=7"))
    assert item.label == "it's 'quoted'"
    assert item.value == 7.0


def test_several_quoted_and_plain_labels() -> None:
    result = parse(0, "OK | 'C:\\ used'=10GB;;;0;20 time=0.5s  'x''y'=3c")
    assert [(p.label, p.value, p.unit) for p in result.perfdata] == [
        ("C:\\ used", 10 * 1024**3, "B"),
        ("time", 0.5, "s"),
        ("x'y", 3.0, "c"),
    ]
    assert result.problems == []


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("5", 5.0, ""),
        ("-2.5", -2.5, ""),
        ("1e3", 1000.0, ""),
        ("3s", 3.0, "s"),
        ("250ms", 0.25, "s"),
        ("1500us", 0.0015, "s"),
        ("42.5%", 42.5, "%"),
        ("100B", 100.0, "B"),
        ("2KB", 2048.0, "B"),
        ("2kB", 2048.0, "B"),
        ("3MB", 3 * 1024.0**2, "B"),
        ("4GB", 4 * 1024.0**3, "B"),
        ("5TB", 5 * 1024.0**4, "B"),
        ("17c", 17.0, "c"),
    ],
)
def test_units(text: str, value: float, unit: str) -> None:
    result = parse(0, f"OK | m={text}")
    item = only(result)
    assert item.value == value
    assert item.unit == unit
    assert result.problems == []


def test_percent_ratio() -> None:
    assert only(parse(0, "OK | used=42.5%;80;90;0;100")).ratio == 0.425
    assert only(parse(0, "OK | used=42B")).ratio is None


def test_unknown_unit_is_kept_unscaled_with_a_problem() -> None:
    result = parse(0, "OK | temp=41.5C;60;70")
    item = only(result)
    assert (item.value, item.unit, item.uom) == (41.5, "", "C")
    assert (item.warn, item.crit) == (60.0, 70.0)
    assert result.problems == ["'temp': unknown unit 'C', value kept unscaled"]


# --- thresholds ----------------------------------------------------------------------------


def test_thresholds_scaled_by_the_unit() -> None:
    item = only(parse(0, "OK | rt=120ms;200;500;0;10000"))
    assert item.value == 0.12
    assert (item.warn, item.crit, item.min, item.max) == (0.2, 0.5, 0.0, 10.0)
    assert (item.warn_raw, item.crit_raw, item.min_raw, item.max_raw) == (
        "200",
        "500",
        "0",
        "10000",
    )
    item = only(parse(0, "OK | mem=1KB;2;3;0;4"))
    assert (item.warn, item.crit, item.min, item.max) == (2048.0, 3072.0, 0.0, 4096.0)


def test_empty_thresholds() -> None:
    item = only(parse(0, "OK | load1=0.160;;;0;"))
    assert (item.warn, item.crit, item.min, item.max) == (None, None, 0.0, None)
    assert (item.warn_raw, item.crit_raw, item.max_raw) == ("", "", "")
    assert item.warn_range is None


def test_range_thresholds_keep_raw_text() -> None:
    result = parse(0, "OK | x=5GB;10:;~:20;;")
    item = only(result)
    assert (item.warn, item.crit) == (None, None)
    assert (item.warn_raw, item.crit_raw) == ("10:", "~:20")
    g = 1024.0**3
    assert item.warn_range == Range(10 * g, math.inf)
    assert item.crit_range == Range(-math.inf, 20 * g)
    assert result.problems == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", Range(0.0, 10.0)),
        ("10:", Range(10.0, math.inf)),
        ("~:10", Range(-math.inf, 10.0)),
        ("10:20", Range(10.0, 20.0)),
        ("@10:20", Range(10.0, 20.0, inside=True)),
        ("-5:-1", Range(-5.0, -1.0)),
        ("", None),
        ("@", None),
        ("abc", None),
        ("20:10", None),
        ("1:~", None),
    ],
)
def test_parse_range(text: str, expected: Range | None) -> None:
    assert parse_range(text) == expected


def test_range_alerts() -> None:
    assert Range(0.0, 10.0).alerts(11.0)
    assert not Range(0.0, 10.0).alerts(10.0)
    assert Range(0.0, 10.0).alerts(-1.0)
    assert Range(10.0, 20.0, inside=True).alerts(15.0)
    assert not Range(10.0, 20.0, inside=True).alerts(25.0)


def test_bad_threshold_is_a_problem_but_keeps_the_item() -> None:
    result = parse(0, "OK | x=5;abc;3;zero")
    item = only(result)
    assert (item.value, item.warn, item.crit, item.min) == (5.0, None, 3.0, None)
    assert result.problems == [
        "'x': warn threshold 'abc' is not a range",
        "'x': min 'zero' is not a number",
    ]


# --- malformed perfdata ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("perf", "problem"),
    [
        ("a=", "'a': missing value"),
        ("a=;1;2", "'a': missing value"),
        ("=", "empty label in '='"),
        ("=5", "empty label in '=5'"),
        ("a=abc", "'a': non-numeric value 'abc'"),
        ("a=U", "'a': value unknown (U)"),
        ("a=U;1;2", "'a': value unknown (U)"),
        ("a=NaN", "'a': non-numeric value 'NaN'"),
        ("a=nan", "'a': non-numeric value 'nan'"),
        ("a=inf", "'a': non-numeric value 'inf'"),
        ("a=-Infinity", "'a': non-numeric value '-Infinity'"),
        ("a=1e999", "'a': value '1e999' is not finite"),
        ("a=1e300TB", "'a': value '1e300TB' is not finite"),
        ("novalue", "no '=' in 'novalue'"),
        ("'unterminated=5 b=1", 'unterminated quote in "\'unterminated=5 b=1"'),
        ("'quoted'5", "no '=' after label in \"'quoted'5\""),
    ],
)
def test_malformed_items_are_problems(perf: str, problem: str) -> None:
    result = parse(0, f"OK | {perf}")
    assert result.perfdata == []
    assert result.problems == [problem]


def test_good_items_survive_beside_bad_ones() -> None:
    result = parse(0, "OK | a=1 b=U c d=x e=2s")
    assert [(p.label, p.value) for p in result.perfdata] == [("a", 1.0), ("e", 2.0)]
    assert len(result.problems) == 3


def test_extra_fields_are_a_problem() -> None:
    result = parse(0, "OK | a=1;2;3;4;5;6")
    assert only(result).max == 5.0
    assert result.problems == ["'a': 1 extra ';' field(s) ignored"]


# --- samples -------------------------------------------------------------------------------


def test_to_samples() -> None:
    result = parse(1, "WARN | 'free space'=2KB;;;0 rt=250ms used=50% n=3c x=7")
    samples = to_samples(result, "disk", 1000.0, {"host": "amms-1", "check": "ignored"})
    assert [(s.metric, dict(s.labels), s.value, s.timestamp) for s in samples] == [
        ("dyzur_check_state", {"host": "amms-1", "check": "disk"}, 1.0, 1000.0),
        (
            "dyzur_check_perfdata",
            {"host": "amms-1", "check": "disk", "label": "free space", "unit": "bytes"},
            2048.0,
            1000.0,
        ),
        (
            "dyzur_check_perfdata",
            {"host": "amms-1", "check": "disk", "label": "rt", "unit": "seconds"},
            0.25,
            1000.0,
        ),
        (
            "dyzur_check_perfdata",
            {"host": "amms-1", "check": "disk", "label": "used", "unit": "percent"},
            50.0,
            1000.0,
        ),
        (
            "dyzur_check_perfdata",
            {"host": "amms-1", "check": "disk", "label": "n", "unit": "count"},
            3.0,
            1000.0,
        ),
        (
            "dyzur_check_perfdata",
            {"host": "amms-1", "check": "disk", "label": "x", "unit": ""},
            7.0,
            1000.0,
        ),
    ]


def test_to_samples_unknown_unit_label_is_empty_and_labels_capped() -> None:
    result = parse(0, f"OK | {'L' * 300}=1furlongs")
    (state, item) = to_samples(result, "c", 0.0)
    assert state.labels == {"check": "c"}
    assert item.labels == {"check": "c", "label": "L" * 100, "unit": ""}


@pytest.mark.parametrize(
    ("code", "value"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (9, 3.0), (-2, 3.0)]
)
def test_state_sample_for_each_exit_code(code: int, value: float) -> None:
    (sample,) = to_samples(parse(code, "x"), "c", 0.0)
    assert sample.metric == "dyzur_check_state"
    assert sample.value == value


# --- real plugins --------------------------------------------------------------------------


def test_real_check_dummy() -> None:
    for code, word in [(0, "OK"), (1, "WARNING"), (2, "CRITICAL"), (3, "UNKNOWN")]:
        result = run_plugin(need_plugin("check_dummy"), str(code), "text")
        assert result.state == code
        assert result.text == f"{word}: text"
        assert result.perfdata == []
        assert result.problems == []


def test_real_check_disk() -> None:
    result = run_plugin(need_plugin("check_disk"), "-w", "20%", "-c", "10%", "-p", "/")
    assert result.state in (CheckState.OK, CheckState.WARNING, CheckState.CRITICAL)
    assert result.text.startswith("DISK ")
    assert result.problems == []
    item = only(result)
    assert item.label == "/"
    assert item.unit == "B"
    assert item.min == 0.0
    assert item.max is not None and 0 < item.value <= item.max
    assert item.warn is not None and item.crit is not None and item.warn < item.crit
    samples = to_samples(result, "disk", 0.0)
    assert samples[1].labels == {"check": "disk", "label": "/", "unit": "bytes"}


def test_real_check_load() -> None:
    result = run_plugin(need_plugin("check_load"), "-w", "1000,1000,1000", "-c", "2000,2000,2000")
    assert result.state is CheckState.OK
    assert result.text.startswith("LOAD OK")
    assert result.problems == []
    labels = [p.label for p in result.perfdata]
    assert {"load1", "load5", "load15"} <= set(labels)
    load1 = result.perfdata[labels.index("load1")]
    assert load1.value >= 0
    assert load1.warn == 1000.0
    assert load1.crit == 2000.0


def test_real_check_tcp() -> None:
    plugin = need_plugin("check_tcp")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = run_plugin(plugin, "-H", "127.0.0.1", "-p", str(port), "-w", "5", "-c", "10")
    assert result.state is CheckState.OK, result
    assert result.text.startswith("TCP OK")
    assert result.problems == []
    item = only(result)
    assert item.label == "time"
    assert item.unit == "s"
    assert 0 <= item.value < 5
    assert (item.warn, item.crit) == (5.0, 10.0)


def test_real_check_tcp_refused() -> None:
    plugin = need_plugin("check_tcp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        result = run_plugin(plugin, "-H", "127.0.0.1", "-p", str(port))
    assert result.state is CheckState.CRITICAL
    assert "refused" in result.text.lower()
    assert result.problems == []


# --- fuzz ----------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    [*"|'=;:@~ \t\r\n\x00\x1b.,-+eE0123456789UuNnAaIiFfBKkMGTsmc%", "''", "=U", "1e999"]
)
_TEXT = st.one_of(
    st.text(),
    st.lists(_ALPHABET, max_size=80).map("".join),
    st.lists(st.one_of(_ALPHABET, st.text(max_size=3)), max_size=40).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(code=st.integers(min_value=-(2**70), max_value=2**70), output=_TEXT)
def test_fuzz_never_raises(code: int, output: str) -> None:
    result = parse(code, output)
    assert 0 <= result.state <= 3
    for item in result.perfdata:
        assert math.isfinite(item.value)
        assert item.label
    for sample in to_samples(result, "fuzz", 0.0):
        assert math.isfinite(sample.value)
        assert len(sample.labels.get("label", "")) <= 100
        assert all(isinstance(v, str) for v in sample.labels.values())
        if sample.metric == "dyzur_check_state":
            assert sample.value in (0.0, 1.0, 2.0, 3.0)


def test_non_int_exit_code_and_bytes_do_not_raise() -> None:
    assert parse(None, "x").state is CheckState.UNKNOWN  # type: ignore[arg-type]
    assert parse(True, "x").state is CheckState.UNKNOWN  # type: ignore[arg-type]
    assert parse(0, b"OK | a=1\xff").text == "OK"  # type: ignore[arg-type]
    assert parse(0, None).text == ""  # type: ignore[arg-type]
