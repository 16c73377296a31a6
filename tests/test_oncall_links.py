"""The one-time links in pages (bridge.delivery.oncall.links): a link names its page and is
valid until its expiry; a forged, altered, cut, expired or reused one acknowledges nothing, and
the key never shows."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from bridge.delivery.oncall.links import (
    EXPIRED,
    FORGED,
    MALFORMED,
    LinkRefused,
    PageLinks,
    load_link_key,
)
from tests.conftest import START

KEY = b"0123456789abcdef-link-key-for-tests"
PUBLIC = "https://dyzur.example.pl"
EXPIRES = START + timedelta(minutes=15)


@pytest.fixture
def links() -> PageLinks:
    return PageLinks(KEY, PUBLIC + "/")


def token_of(url: str) -> str:
    prefix = PUBLIC + "/oncall/ack/"
    assert url.startswith(prefix)
    return url.removeprefix(prefix)


def test_a_link_names_its_page_until_it_expires(links):
    url = links.url("DZ-2026-000123", "jan.kowalski", 1, EXPIRES)
    claim = links.verify(token_of(url), START)
    assert (claim.ticket, claim.person, claim.step, claim.expires) == (
        "DZ-2026-000123",
        "jan.kowalski",
        1,
        EXPIRES,
    )
    # Short enough to leave an SMS room for its text.
    assert len(url) <= 90
    # The same page sent again (a retry, a second channel) carries the same link and token id.
    again = links.url("DZ-2026-000123", "jan.kowalski", 1, EXPIRES)
    assert again == url
    assert links.verify(token_of(again), START).token_id == claim.token_id


def test_every_page_has_its_own_token_id(links):
    ids = {
        links.verify(links.token(ticket, person, step, EXPIRES), START).token_id
        for ticket in ("DZ-2026-000123", "DZ-2026-000124")
        for person in ("jan", "ewa")
        for step in (0, 1)
    }
    assert len(ids) == 8


def test_an_expired_link_is_refused(links):
    token = links.token("DZ-2026-000123", "jan", 0, EXPIRES)
    links.verify(token, EXPIRES - timedelta(seconds=1))
    with pytest.raises(LinkRefused) as refused:
        links.verify(token, EXPIRES)
    assert refused.value.reason == EXPIRED
    assert "expired" in str(refused.value)


def test_a_link_signed_with_another_key_is_forged(links):
    other = PageLinks(b"another-key-of-someone-else!!", PUBLIC)
    token = other.token("DZ-2026-000123", "jan", 0, EXPIRES)
    with pytest.raises(LinkRefused) as refused:
        links.verify(token, START)
    assert refused.value.reason == FORGED


def test_an_altered_claim_is_forged(links):
    """Someone changes the step, the person or the expiry inside a genuine token."""
    raw = bytearray(
        base64.urlsafe_b64decode(links.token("DZ-2026-000123", "jan", 0, EXPIRES) + "==")
    )
    for position in (1, 5, 6, 12, 13):  # expiry, step, ticket year, sequence, person
        altered = bytearray(raw)
        altered[position] ^= 0x01
        token = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        with pytest.raises(LinkRefused) as refused:
            links.verify(token, START)
        assert refused.value.reason == FORGED, position


@pytest.mark.parametrize(
    "token",
    ["", "abc", "not base64 at all!", "A" * 10, "A" * 5000, "../../etc/passwd", "%00%00"],
)
def test_a_malformed_token_is_refused(links, token):
    with pytest.raises(LinkRefused) as refused:
        links.verify(token, START)
    assert refused.value.reason in (MALFORMED, FORGED)


def test_a_token_cut_short_is_refused(links):
    token = links.token("DZ-2026-000123", "jan", 0, EXPIRES)
    for cut in (1, 4, len(token) // 2):
        with pytest.raises(LinkRefused):
            links.verify(token[:-cut], START)


def test_a_reused_link_is_refused_by_its_one_time_use(links, store):
    claim = links.verify(links.token("DZ-2026-000123", "jan", 0, EXPIRES), START)
    assert store.use_page_link(claim.token_id, START) is True
    # The same link opened again (a second click, another device): valid, but used.
    again = links.verify(links.token("DZ-2026-000123", "jan", 0, EXPIRES), START)
    assert store.use_page_link(again.token_id, START + timedelta(seconds=3)) is False


def test_the_key_never_shows(links):
    assert KEY.decode() not in repr(links)
    with pytest.raises(LinkRefused) as refused:
        links.verify("A" * 40, START)
    assert KEY.decode() not in str(refused.value)


def test_what_cannot_be_put_in_a_link_is_refused_naming_it(links):
    with pytest.raises(ValueError, match="ticket"):
        links.token("INC-1", "jan", 0, EXPIRES)
    with pytest.raises(ValueError, match="person"):
        links.token("DZ-2026-000001", "Jan Kowalski", 0, EXPIRES)
    with pytest.raises(ValueError, match="expires"):
        links.token("DZ-2026-000001", "jan", 0, EXPIRES.replace(tzinfo=None))


def test_the_link_key_file_must_be_owner_only_and_long_enough(tmp_path):
    path = tmp_path / "link.key"
    path.write_bytes(KEY + b"\n")
    path.chmod(0o600)
    assert load_link_key(path) == KEY
    path.chmod(0o644)
    with pytest.raises(ValueError, match=r"oncall\.link_key_file.*group or others") as refused:
        load_link_key(path)
    assert KEY.decode() not in str(refused.value)
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="fewer than 16 bytes"):
        load_link_key(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_link_key(tmp_path / "missing.key")
