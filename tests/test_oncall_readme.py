"""README's "On call (dyżur)" example is a valid configuration: parsed by the real loader,
with its secret files in place, and it means what the text says of it."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bridge.config import load_config
from bridge.delivery.oncall.rota import Rota

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


def test_the_readmes_example_rota_is_a_valid_configuration(tmp_path):
    config = tmp_path / "dyzur.yaml"
    config.write_text(example())
    (tmp_path / "secrets").mkdir()
    for name in ("oncall-link.key", "smtp.password", "smsapi.token", "sms2.token"):
        secret = tmp_path / "secrets" / name
        secret.write_text("x" * 44 + "\n")
        secret.chmod(0o600)
    loaded = load_config(config)
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
