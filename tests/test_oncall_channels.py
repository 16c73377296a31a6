"""What a paged person reads and how a channel sends it: the SMS within 160 characters in the
person's language (the link and the number whole, Polish letters never cut), its GSM-7/UCS-2
encoding, the gateway's body rendered from its template with the values escaped for JSON or a
form, and the gateway's answers (a real HTTP server standing in for the SMS gateway) turned
into retries or refusals; no secret in an error."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest

from bridge.delivery.oncall.channels import SmsGateway
from bridge.delivery.oncall.message import (
    EarlierPage,
    PageMessage,
    body,
    sms_encoding,
    sms_segments,
    sms_text,
    subject,
)
from bridge.delivery.outbox import Permanent, Retry
from bridge.models import Asset, Category, Client
from tests.conftest import START
from tests.sms_gateway import SmsGatewayServer
from tests.store.conftest import make_ticket

LINK = "https://dyzur.example.pl/oncall/ack/AWsE9mwAB-oAAAAEamFu_Y588i1NOZRzZljp"
SECRET = "gateway-token-42"


def message(**kw) -> PageMessage:
    ticket = kw.pop(
        "ticket",
        make_ticket(
            123,
            category=Category.AWARIA,
            title='Usługa "AMMS" nie działa na amms-01\\prod',
            client="szpital-a",
            asset="amms-01",
        ),
    )
    fields = dict(
        key="k" * 64,
        at=START,
        ticket=ticket,
        client=Client(id="szpital-a", name="Szpital Wojewódzki im. Świętej Łucji w Gdańsku"),
        asset=Asset(id="amms-01", client="szpital-a", kind="amms", name="AMMS produkcja"),
        person_id="jan",
        name="Jan Kowalski",
        language="pl",
        email="jan@serwis.example.pl",
        phone="+48601000001",
        step=0,
        link=LINK,
        expires=START + timedelta(minutes=15),
    )
    fields.update(kw)
    return PageMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
def gateway():
    g = SmsGatewayServer()
    g.up()
    yield g
    g.down()


def secret_file(tmp_path, content: str = SECRET):
    path = tmp_path / "sms.secret"
    path.write_text(content + "\n")
    path.chmod(0o600)
    return path


def test_an_sms_keeps_the_number_and_the_link_whole_within_160_characters():
    long_title = make_ticket(
        123,
        category=Category.AWARIA,
        title="Zajętość dysku /var/lib/pgsql na serwerze bazodanowym AMMS przekroczyła próg " * 3,
        client="szpital-a",
    )
    earlier = [EarlierPage("Ewa Nowak", "sms", START), EarlierPage("Olek", "email", START)]
    short = Client(id="szpital-a", name="Szpital A")
    for page in (
        message(),
        message(ticket=long_title),
        message(ticket=long_title, client=short),
        message(ticket=long_title, step=2, earlier=earlier),
        message(ticket=long_title, language="en"),
    ):
        text = sms_text(page)
        assert len(text) <= 160, text
        assert page.ticket.number in text and text.endswith(LINK)
    text = sms_text(message(ticket=long_title, step=2, earlier=earlier, client=short))
    assert text.startswith("DYŻUR Awaria DZ-2026-000123 (3) Szpital A: Zaj")
    assert "… Wcześniej: 10:00, 10:00. Potwierdź: " in text
    # The title was shortened after a word, with an ellipsis.
    text = sms_text(message(ticket=long_title, client=short))
    shortened = text.split("Szpital A: ", 1)[1].split("…")[0]
    assert shortened.startswith("Zajętość dysku /var/lib/pgsql")
    assert long_title.title.startswith(shortened)
    assert long_title.title[len(shortened)] == " "
    # A long hospital name gives way to a recognisable start, and the title still shows.
    text = sms_text(message(ticket=long_title))
    assert text.startswith("DYŻUR Awaria DZ-2026-000123 Szpital Wojewódzki…: Zajętość dysku")


def test_an_sms_is_in_the_persons_language_with_the_earlier_pages_times():
    earlier = [EarlierPage("Jan Kowalski", "sms", START)]  # 10:00 in Warsaw
    polish = sms_text(message(step=1, earlier=earlier))
    assert "Wcześniej: 10:00." in polish and "Potwierdź: " in polish
    english = sms_text(message(step=1, earlier=earlier, language="en"))
    assert english.startswith("ON CALL Outage DZ-2026-000123 (2) ")
    assert "Paged before: 10:00." in english and "Ack: " in english
    assert "Potwierdź" not in english


def test_without_a_link_the_page_says_how_to_acknowledge():
    text = sms_text(message(link=None))
    assert text.endswith("Potwierdź w dyzur.")
    assert "dyzur tickets ack DZ-2026-000123" in body(message(link=None))


def test_the_e_mail_of_a_page():
    page = message(step=1, earlier=[EarlierPage("Ewa Nowak", "email", START)])
    assert subject(page) == (
        "[DZ-2026-000123] DYŻUR (eskalacja, krok 2): Awaria – Szpital Wojewódzki im. Świętej "
        'Łucji w Gdańsku: Usługa "AMMS" nie działa na amms-01\\prod'
    )
    text = body(page)
    assert text.startswith("Jan Kowalski, zgłoszenie wymaga reakcji dyżurnego.\n")
    assert "Wcześniej powiadomieni: Ewa Nowak 23.11.2026 10:00 CET (email)" in text
    assert "Zasób:          amms-01 (AMMS produkcja)" in text
    assert "(link jednorazowy, ważny do 23.11.2026 10:15 CET):\n" + LINK in text


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("ALARM DZ-2026-000001: disk full", "gsm7", 1),
        ("a" * 160, "gsm7", 1),
        ("a" * 161, "gsm7", 2),
        ("[" * 80, "gsm7", 1),  # an extension character takes two septets
        ("[" * 81, "gsm7", 2),
        ("Zażółć gęślą jaźń", "ucs2", 1),
        ("ż" * 70, "ucs2", 1),
        ("ż" * 71, "ucs2", 2),
        ("ż" * 134, "ucs2", 2),
        ("ż" * 135, "ucs2", 3),
        ("èéÄÖ €", "gsm7", 1),
    ],
)
def test_sms_encoding_and_segments(text, encoding, segments):
    assert sms_encoding(text) == encoding
    assert sms_segments(text) == segments


def test_a_json_body_carries_the_text_escaped(tmp_path, gateway):
    sms = SmsGateway(
        "sms",
        gateway.url,
        secret_file(tmp_path),
        '{"to": "{{ phone }}", "message": "{{ text }}", "parts": {{ segments }}, '
        '"ref": "{{ ticket }}/{{ person }}"}',
    )
    page = message()
    sms.send(page)
    [(headers, raw, _)] = gateway.requests
    sent = json.loads(raw)  # quotes and backslashes of the title did not break the JSON
    assert sent["to"] == "+48601000001"
    assert sent["message"] == sms_text(page) and '"AMMS"' in sent["message"]
    assert sent["parts"] == sms_segments(sent["message"])
    assert sent["ref"] == "DZ-2026-000123/jan"
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["idempotency-key"] == "k" * 64
    assert headers["content-type"] == "application/json"


def test_a_form_body_carries_the_text_url_encoded(tmp_path, gateway):
    sms = SmsGateway(
        "sms",
        gateway.url,
        secret_file(tmp_path),
        "to={{ phone }}&message={{ text }}&encoding={{ encoding }}",
        method="PUT",
        content_type="application/x-www-form-urlencoded",
    )
    sms.send(message())
    [(headers, raw, _)] = gateway.requests
    assert headers[":method"] == "PUT"
    form = parse_qs(raw.decode(), strict_parsing=True)
    assert form == {
        "to": ["+48601000001"],
        "message": [sms_text(message())],
        "encoding": ["ucs2"],
    }


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('{"to": "{{ tel }}", "message": "{{ text }}"}', "'tel' is undefined"),
        ('{"to": "{{ phone }}", "message": {{ text }}}', "not JSON once rendered"),
        ('{"to": "{{ phone }"}', "unexpected"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ],
)
def test_a_bad_body_template_is_refused_naming_the_field(tmp_path, template, problem):
    with pytest.raises(ValueError, match=r"oncall\.channels\.sms\.body") as refused:
        SmsGateway("sms", "http://127.0.0.1:9/sms", secret_file(tmp_path), template)
    assert problem in str(refused.value)


def test_the_gateways_answers(tmp_path, gateway):
    sms = SmsGateway(
        "sms", gateway.url, secret_file(tmp_path), '{"to": "{{ phone }}", "m": "{{ text }}"}'
    )
    gateway.script = [
        (429, {"Retry-After": "120"}),
        (503, {}),
        (500, {}),
        (400, {}),
    ]
    with pytest.raises(Retry) as busy:
        sms.send(message())
    assert busy.value.after == 120
    for _ in range(2):
        with pytest.raises(Retry):
            sms.send(message())
    with pytest.raises(Permanent, match="answered 400"):
        sms.send(message())
    assert sms.send(message()).endswith("answered 200 OK")
    assert len(gateway.messages()) == 1
    for headers, _, _ in gateway.requests:
        assert headers["authorization"] == f"Bearer {SECRET}"


def test_a_person_the_channel_cannot_reach_is_refused_for_good(tmp_path, gateway):
    sms = SmsGateway("sms", gateway.url, secret_file(tmp_path), '{"m": "{{ text }}"}')
    with pytest.raises(Permanent, match="person jan has no phone number"):
        sms.send(message(phone=None))
    assert gateway.requests == []


def test_no_secret_in_an_error(tmp_path, gateway):
    url = gateway.url.replace("http://", "http://dyzur:hunter2@")
    missing = SmsGateway("sms", url, tmp_path / "absent.secret", '{"m": "{{ text }}"}')
    with pytest.raises(Retry) as refused:
        missing.send(message())
    assert "absent.secret" in str(refused.value)
    gateway.down()
    sms = SmsGateway("sms", url, secret_file(tmp_path), '{"m": "{{ text }}"}')
    with pytest.raises(Retry) as down:
        sms.send(message())
    assert "hunter2" not in str(down.value) and SECRET not in str(down.value)


def test_check_config_can_name_a_bad_body_template():
    from bridge.config import SmsGatewayChannel
    from bridge.delivery.oncall.channels import body_problem

    good = SmsGatewayChannel(
        kind="webhook", url="http://127.0.0.1:9/sms", body='{"m": "{{ text }}"}', secret_file="s"
    )
    assert body_problem("sms", good) is None
    bad = good.model_copy(update={"body": '{"m": {{ text }}}'})
    problem = body_problem("sms", bad)
    assert problem is not None and problem.startswith("oncall.channels.sms.body: not JSON")
