"""README's "On call (dyżur)" example is a valid configuration: parsed by the real loader,
with its secret files in place, and it means what the text says of it."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bridge.config import load_config
from bridge.delivery.oncall.rota import Rota
from tests.test_cli import dyzur

README = Path(__file__).resolve().parents[1] / "README.md"
WARSAW = ZoneInfo("Europe/Warsaw")


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def example() -> str:
    [first, *_] = re.findall(r"```yaml\n(.*?)```", section("On call (dyżur)"), re.S)
    return first


def saved_example(directory: Path) -> Path:
    """The example saved as dyzur.yaml with its secret files beside it, as README says."""
    config = directory / "dyzur.yaml"
    config.write_text(example())
    (directory / "secrets").mkdir()
    for name in ("oncall-link.key", "smtp.password", "smsapi.token", "sms2.token"):
        secret = directory / "secrets" / name
        secret.write_text("x" * 44 + "\n")
        secret.chmod(0o600)
    return config


def test_the_readmes_example_rota_is_a_valid_configuration(tmp_path):
    loaded = load_config(saved_example(tmp_path))
    oncall = loaded.config.oncall
    assert oncall is not None and len(oncall.people) == 8
    # The engineers are paged by SMS and e-mail at once, the second gateway standing in.
    anna = oncall.people[0]
    assert (anna.channels, anna.fallback_channels) == (["sms", "mail"], ["sms2"])
    rota = Rota(oncall)

    def who(rota_name: str, kind: str, at: str) -> str | None:
        when = datetime.fromisoformat(at).replace(tzinfo=WARSAW)
        duty = rota.on_duty(rota_name, "szpital-wojewodzki", kind, when)
        return duty.person.id if duty is not None else None

    # A week of 24-hour shifts rotating among four engineers, from 08:00.
    week = [who("primary", "server", f"2026-12-{day:02d}T03:00") for day in range(1, 8)]
    assert week == ["anna", "bartek", "celina", "darek", "anna", "bartek", "celina"]
    # The AMMS specialist on AMMS hosts on weekdays by day; the engineer on duty otherwise.
    assert who("primary", "amms", "2026-12-01T10:00") == "marek"
    assert who("primary", "server", "2026-12-01T10:00") == "bartek"
    assert who("primary", "amms", "2026-12-01T20:00") == "bartek"
    assert who("primary", "amms", "2026-12-05T10:00") == "bartek"  # a Saturday
    # The second line, a week each.
    assert who("secondary", "server", "2026-12-02T03:00") == "jan"
    assert who("secondary", "server", "2026-12-09T03:00") == "tom"


def test_the_readmes_oncall_now_answers_for_the_hospitals_assets(tmp_path):
    """README's `dyzur oncall now` on the example lists the rows it shows (each rota for each
    kind of the hospital's assets). Without README's swap, whose dates pass, the primary rota
    has the person the swap replaced."""
    saved_example(tmp_path)
    [command] = re.findall(r"^\$ (dyzur oncall now .*)$", section("On call (dyżur)"), re.M)
    shown = section("On call (dyżur)").split(command, 1)[1].split("```", 1)[0]
    shown_rows = [line.split()[:3] for line in shown.strip().splitlines()[2:]]
    r = dyzur(*command.split()[1:], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.strip().splitlines()[2:]]
    assert [row[:3] for row in rows] == shown_rows
    assert {row[0]: row[-5] for row in rows} == {"primary": "(anna)", "secondary": "(jan)"}
    checked = dyzur("check-config", "dyzur.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
