"""dyzur.yaml: the bridge's one configuration file, validated with errors that name the field."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.auth import Principal, TokenRegistry, parse_role
from bridge.delivery.siem import Destination
from bridge.delivery.sinks import SinkStore, TicketSink
from bridge.delivery.sinks.email import EmailSink
from bridge.delivery.sinks.redmine import RedmineApi, RedmineSink
from bridge.delivery.sinks.webhook import WebhookSink
from bridge.delivery.smtp import SmtpClient, mailbox
from bridge.models import (
    ID_PATTERN,
    Asset,
    AssetKind,
    Category,
    Client,
    Duration,
    Language,
    between,
)
from collectors.yamlfile import YamlError, load_yaml
from rules.loader import RuleFileError, load_rule_files
from rules.model import Rule

EXAMPLE_CONFIG = Path(__file__).with_name("example.yaml")

# The sane range of each duration setting (README, "Configuration"): a tick of 0s would spin
# a core, and a period of centuries overflows the dates computed from it.
ConnectTimeout = Annotated[Duration, between(1.0, 300.0)]
SoakPeriod = Annotated[Duration, between(0.0, 14 * 86400.0)]
SettlePeriod = Annotated[Duration, between(0.0, 3600.0)]
ReopenPeriod = Annotated[Duration, between(0.0, 30 * 86400.0)]
TickInterval = Annotated[Duration, between(0.1, 600.0)]
ClockSkew = Annotated[Duration, between(1.0, 86400.0)]
EventsMaxAge = Annotated[Duration, between(60.0, 365 * 86400.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # HTTPS: certificate chain and private key (PEM), relative to the config file.
    tls_cert: str | None = None
    tls_key: str | None = None


class SlaSettings(_Strict):
    # "SLA at risk" when this share of the reaction time passed without a response.
    at_risk_share: float = Field(0.75, gt=0, lt=1)


class SiemConfig(_Strict):
    """A SIEM that receives audit events as syslog (RFC 5424) or CEF."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    # udp://HOST:PORT, tcp://HOST:PORT (RFC 6587 octet counting) or tls://HOST:PORT (RFC 5425)
    url: str
    format: Literal["rfc5424", "cef"] = "rfc5424"
    # The hospitals whose events go there; leave out for the service company's own SIEM.
    clients: list[str] | None = None
    # tls: the CA that signed the SIEM's certificate (default: the system's), and a client
    # certificate with its key if the SIEM asks for one. Paths relative to this file.
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # Events kept for it while it is away; beyond that the oldest go (and are reported).
    max_queue: int = Field(100_000, ge=1)


SinkName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class _SinkBase(_Strict):
    """What every helpdesk sink has (README, "Helpdesk")."""

    name: SinkName
    # The hospitals whose tickets go there; leave out for every hospital's.
    clients: list[str] | None = None


class WebhookSinkConfig(_SinkBase):
    """Each ticket change as a signed JSON POST."""

    kind: Literal["webhook"]
    # http(s)://HOST[:PORT]/PATH the changes are POSTed to.
    url: str = Field(pattern=r"^https?://[^/\s]+")
    # The HMAC-SHA256 key of X-Dyzur-Signature, relative to this file; owner-only (0600/0400).
    secret_file: str


class EmailSinkConfig(_SinkBase):
    """Each ticket change as an e-mail to a helpdesk's mail intake, one thread per ticket."""

    kind: Literal["email"]
    # smtp://HOST[:PORT] (STARTTLS, required unless tls: none) or smtps://HOST[:PORT].
    url: str = Field(pattern=r"^smtps?://[^/\s]+$")
    # required: STARTTLS or implicit TLS with the certificate verified; none: plain text, on
    # purpose only (a relay on the same host).
    tls: Literal["required", "none"] = "required"
    # The CA that signed the server's certificate (default: the system's), relative to this file.
    ca_file: str | None = None
    sender: str = Field(alias="from", min_length=3, max_length=254)
    to: list[str] = Field(min_length=1)
    # SMTP login; the password is read from an owner-only file.
    username: str | None = None
    password_file: str | None = None


class RedmineSinkConfig(_SinkBase):
    """Each ticket as a Redmine issue, its changes as journal notes; responses come back."""

    kind: Literal["redmine"]
    # http(s)://HOST[:PORT][/PATH] of the Redmine.
    url: str = Field(pattern=r"^https?://[^/\s]+")
    # The REST API key of the Redmine user dyzur acts as, relative to this file; owner-only.
    api_key_file: str
    # client id -> project identifier; "default" for the rest.
    projects: dict[str, str] = Field(min_length=1)
    # The issue custom field that holds dyzur's ticket number: a text field for every project
    # and tracker dyzur uses, "used as a filter".
    custom_field_id: int = Field(ge=1)
    # category -> tracker id and priority id; the rest take Redmine's defaults.
    trackers: dict[Category, Annotated[int, Field(ge=1)]] = {}
    priorities: dict[Category, Annotated[int, Field(ge=1)]] = {}
    # The status a resolved ticket's issue is set to (None: left as it is, the note tells).
    resolved_status_id: int | None = Field(None, ge=1)
    # The status a reopened ticket's closed (or resolved) issue is set to (None: the default
    # status of the tracker, Redmine's "New").
    reopened_status_id: int | None = Field(None, ge=1)
    # How often the issues dyzur created are read back for the helpdesk's responses.
    poll_interval: Annotated[Duration, between(5.0, 3600.0)] = 60.0


SinkConfig = Annotated[
    WebhookSinkConfig | EmailSinkConfig | RedmineSinkConfig, Field(discriminator="kind")
]
SINK_KINDS = ("webhook", "email", "redmine")
SINK_SECRETS = ("secret_file", "password_file", "api_key_file")


PersonId = Annotated[str, Field(pattern=ID_PATTERN)]


class OncallPerson(_Strict):
    """An engineer who can be on duty (README, "On call (dyżur)")."""

    id: PersonId
    name: str = Field(min_length=1, max_length=200)
    email: str | None = None
    # E.164, for SMS: +48601234567
    phone: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$")
    # The language of the pages this person gets.
    language: Language = "pl"
    # The names of oncall.channels that page this person, all at once (the SMS wakes, the
    # e-mail carries the detail and the link).
    channels: list[str] = Field(min_length=1)
    # Channels tried in this order when a page by one of channels was not delivered within
    # oncall.fallback_after (or was refused), say a second SMS gateway.
    fallback_channels: list[str] = []


class OncallShift(_Strict):
    """A period a person is on duty, once or recurring, for some coverage."""

    person: PersonId
    # Europe/Warsaw wall-clock time of the (first) start: 2026-11-30T08:00
    start: datetime
    duration: Annotated[Duration, between(60.0, 31 * 86400.0)]
    # RFC 5545 recurrence (FREQ=WEEKLY;BYDAY=MO), kept at its wall-clock hours across DST.
    rrule: str | None = None
    # The rota the shift belongs to: the first page goes to "primary"; escalation steps may
    # name other rotas (rota:secondary).
    rota: str = Field("primary", pattern=ID_PATTERN)
    # The coverage: these hospitals (None: all) and asset kinds (None: all).
    clients: list[str] | None = None
    kinds: list[AssetKind] | None = None
    # Overlapping shifts of one rota and coverage need distinct priorities; the higher wins,
    # a shift without one being the lowest.
    priority: int | None = None


class EscalationStep(_Strict):
    """Nobody acknowledged within ``after`` of the previous page: page ``then``."""

    after: Annotated[Duration, between(60.0, 86400.0)]
    # Person ids, or rota:NAME (who is on duty in that rota for the ticket's coverage).
    then: list[str] = Field(min_length=1)


class EmailChannel(_Strict):
    """Pages as e-mail, through the same SMTP client as the e-mail sink."""

    kind: Literal["email"]
    url: str = Field(pattern=r"^smtps?://[^/\s]+$")
    tls: Literal["required", "none"] = "required"
    ca_file: str | None = None
    sender: str = Field(alias="from", min_length=3, max_length=254)
    username: str | None = None
    password_file: str | None = None


class SmsGatewayChannel(_Strict):
    """Pages as SMS through a gateway's HTTP API: the body template is rendered with
    ``{{ phone }}`` and ``{{ text }}`` (at most 160 characters) and sent to ``url``."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^/\s]+")
    method: Literal["POST", "PUT"] = "POST"
    content_type: str = "application/json"
    body: str = Field(min_length=1)
    # Sent as a bearer token (Authorization) and the HMAC key of X-Dyzur-Signature; owner-only.
    secret_file: str


PageChannel = Annotated[EmailChannel | SmsGatewayChannel, Field(discriminator="kind")]
CHANNEL_KINDS = ("email", "webhook")


class OncallSettings(_Strict):
    """Who is on duty, what pages them, and the escalation when nobody acknowledges."""

    people: list[OncallPerson] = []
    shifts: list[OncallShift] = []
    channels: dict[str, PageChannel] = {}
    # The ticket categories that page.
    page: list[Category] = [Category.AWARIA]
    # Hospitals with a standard contract whose tickets page outside its service hours too.
    page_outside_service_hours: list[str] = []
    escalation: list[EscalationStep] = []
    # A page whose first channel failed this long goes to the person's next channel too.
    fallback_after: Annotated[Duration, between(30.0, 86400.0)] = 300.0
    # The HMAC key of the acknowledgment links in pages, kept outside the store; owner-only.
    link_key_file: str | None = None


class SshSettings(_Strict):
    """How the bridge runs update runbooks over SSH (the ssh collector's runner and trust)."""

    # dyzur's known_hosts, relative to this file; record keys with `dyzur ssh trust`.
    known_hosts: str
    # A private key (ed25519 or RSA, without a passphrase; keep it 0600) or the SSH agent.
    key_file: str | None = None
    use_agent: bool = False
    # The login of assets whose ssh: has no user.
    user: str | None = None
    connect_timeout: ConnectTimeout = 10.0


class UpdateSettings(_Strict):
    # How long the test assets must stay free of awaria/usterka alerts after the test stage.
    soak: SoakPeriod = 1800.0
    # How long a stage's window keeps muting its hosts after the stage completed or failed
    # (a restarted AMMS settling); then the window ends and alerts open tickets at once.
    settle: SettlePeriod = 120.0


HoldPeriod = Annotated[Duration, between(0.0, 3600.0)]
IncidentPeriod = Annotated[Duration, between(0.0, 86400.0)]
StormPeriod = Annotated[Duration, between(60.0, 86400.0)]


class StormBudget(_Strict):
    """At most ``tickets`` new tickets of one hospital in any ``period``."""

    tickets: int = Field(10, ge=1, le=100_000)
    period: StormPeriod = 600.0


class StormSettings(StormBudget):
    # false: no storm budget at all (every alert beyond incidents opens its ticket).
    enabled: bool = True
    # A storm ends when no new alert joined it for this long: its alerts still firing then
    # open tickets of their own.
    quiet: StormPeriod = 300.0
    # Budgets of single hospitals, by client id.
    clients: dict[str, StormBudget] = {}


class IncidentSettings(_Strict):
    """Incidents by dependency (assets' depends_on) and the storm budget (README: Incidents
    and storms)."""

    # How long a dependent's alert waits for its root cause's alert to claim it.
    settle: HoldPeriod = 90.0
    # The settle time by the kind of the asset depended on (a UPS polled every minute).
    settle_by_kind: dict[AssetKind, HoldPeriod] = {}
    # A held alert whose root is stale (nothing from it for stale_after) waits longer, up to
    # max_hold from its firing.
    stale_after: Annotated[Duration, between(10.0, 86400.0)] = 180.0
    max_hold: HoldPeriod = 900.0
    # After the root recovers, dependents still firing this long open tickets of their own.
    grace: IncidentPeriod = 300.0
    # A dependent's own ticket opened at most this long before its root's is linked to it.
    link_period: IncidentPeriod = 600.0
    storm: StormSettings = StormSettings()


class CategoryMapping(_Strict):
    """Alerts whose labels all match ``match`` open tickets of ``category``."""

    match: dict[str, str] = Field(min_length=1)
    category: Literal["awaria", "usterka", "utrzymanie"]


class AlertmanagerSettings(_Strict):
    """How alerts from Alertmanager's webhook map to assets and categories."""

    # The first of these labels naming an inventory asset wins ("instance" is also tried
    # without its port: amms-01:9100 -> amms-01).
    asset_labels: list[str] = Field(["asset", "instance"], min_length=1)
    # The first mapping whose labels all match gives the category.
    categories: list[CategoryMapping] = [
        CategoryMapping(match={"severity": "critical"}, category="awaria"),
        CategoryMapping(match={"severity": "warning"}, category="usterka"),
    ]
    # For alerts no mapping matches; null refuses them (named in the response).
    default_category: Literal["awaria", "usterka", "utrzymanie"] | None = "usterka"


class UserConfig(_Strict):
    """A person who logs in to the pages (``dyzur user new`` makes the entry): the password
    only as an argon2id hash."""

    # Lower case; typed in any case at the login form.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._@-]{0,99}$")
    # engineer, admin or client:<id> (a hospital's staff: its tickets only, no actions).
    role: str
    # "$argon2id$v=19$m=...,t=...,p=...$salt$hash", never the password itself.
    password: str = Field(repr=False)
    # The pages' language for this person (default: the browser's).
    language: Language | None = None


SessionIdle = Annotated[Duration, between(60.0, 86400.0)]
SessionLifetime = Annotated[Duration, between(300.0, 7 * 86400.0)]
LoginPeriod = Annotated[Duration, between(60.0, 86400.0)]


class WebSettings(_Strict):
    """The pages' sessions and the guard against guessed passwords (README: Web pages)."""

    # A session unused this long ends; none lasts longer than session_lifetime.
    session_idle: SessionIdle = 1800.0
    session_lifetime: SessionLifetime = 43200.0
    # This many failed logins of one user name (or from one source address) within
    # failure_window lock it out for lockout; a correct password is refused meanwhile.
    user_failures: int = Field(5, ge=2, le=1000)
    source_failures: int = Field(20, ge=2, le=100_000)
    failure_window: LoginPeriod = 900.0
    lockout: LoginPeriod = 900.0
    # After half of those failures (the second of a name's, the tenth of a source's) the next
    # attempt waits this long, doubling with each failure (at most 30 s); 0: no wait.
    login_delay: Annotated[Duration, between(0.0, 30.0)] = 1.0


class TokenConfig(_Strict):
    """A bearer token, stored only as its SHA-256 hash (``dyzur token new`` makes one)."""

    name: str = Field(min_length=1, max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: str
    # For agent tokens: the client whose assets the agent may report for (default: any).
    client: str | None = None


class ClusterSettings(_Strict):
    """Several bridges on one PostgreSQL store, coordinated through Redis (README: Running two
    bridges)."""

    # Every key in Redis starts with it: the bridges of one installation share it.
    prefix: str = Field("dyzur", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    # The work a bridge holds (a hospital's series, each outbox consumer's deliveries) stays
    # with it this long after it stopped renewing its lease (it died or hangs): the longest a
    # hospital's alerts or a helpdesk's changes wait for another bridge.
    lease: Annotated[Duration, between(3.0, 300.0)] = 15.0
    # How long a bridge waits for the bridge holding a hospital to take a batch it received
    # for it; then the agent is answered 503 and sends it again later.
    handover_timeout: Annotated[Duration, between(1.0, 60.0)] = 10.0
    # A handed-over batch whose processing failed this many times goes to the dead letters.
    dead_letter_after: int = Field(5, ge=1, le=100)


class Config(_Strict):
    store: str = "sqlite:///var/dyzur.db"
    # Redis shared by several bridges (redis://host:port/db): leases of the singleton work and
    # the hand-over of pushed batches to the bridge holding their hospital. None: one bridge.
    coordination: str | None = Field(None, pattern=r"^rediss?://\S+$")
    cluster: ClusterSettings = ClusterSettings()
    listen: Listen = Listen()
    # Largest request body accepted; larger ones get 413.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # A re-fire within this period after resolution reopens the same ticket.
    reopen_period: ReopenPeriod = 3600.0
    # How often absence rules are evaluated.
    tick_interval: TickInterval = 5.0
    # Samples stamped further than this in the future are rejected.
    max_clock_skew: ClockSkew = 300.0
    # Audit events an agent sends (SSH commands it ran) may be this old: as long as an agent
    # may keep them in its spool while the bridge is away.
    agent_events_max_age: EventsMaxAge = 7 * 86400.0
    # An agent's batch number jumping further than this is an anomaly (see GET /api/v1/agents).
    max_seq_gap: int = Field(10_000, ge=1, le=1_000_000_000)
    # Whether /metrics answers without a token (for a Prometheus that cannot send one).
    public_metrics: bool = False
    # Where people reach this bridge (https://dyzur.example.pl), for the links to tickets in
    # e-mails and helpdesk tickets; None: no link.
    public_url: str | None = Field(None, pattern=r"^https?://[^/\s]+")
    sla: SlaSettings = SlaSettings()
    siem: list[SiemConfig] = []
    sinks: list[SinkConfig] = []
    oncall: OncallSettings | None = None
    ssh: SshSettings | None = None
    updates: UpdateSettings = UpdateSettings()
    incidents: IncidentSettings = IncidentSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    rule_files: list[str] = ["builtin:hosts"]
    clients: list[Client] = []
    assets: list[Asset] = []
    tokens: list[TokenConfig] = []
    # People who log in to the pages, and their sessions.
    users: list[UserConfig] = []
    web: WebSettings = WebSettings()


class ConfigError(Exception):
    """The configuration is not valid; ``problems`` lists each one with its field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def siem_destinations(config: Config, base_dir: Path) -> list[Destination]:
    def path(value: str | None) -> Path | None:
        return None if value is None else base_dir / value

    return [
        Destination.from_url(
            d.name,
            d.url,
            format=d.format,
            clients=None if d.clients is None else frozenset(d.clients),
            ca_file=path(d.ca_file),
            client_cert=path(d.client_cert),
            client_key=path(d.client_key),
            max_queue=d.max_queue,
        )
        for d in config.siem
    ]


def secret_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot hold a secret (missing, not a file, readable by group or others);
    None when it can. Never reads the content."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return f"no such file {str(path)!r}"
    if not stat.S_ISREG(mode):
        return f"{str(path)!r} is not a file"
    if mode & 0o077:
        return (
            f"{str(path)!r} is open to group or others (mode {stat.S_IMODE(mode):04o}); "
            "a secret file must be readable only by its owner: chmod 600 it"
        )
    return None


def sink_consumers(
    config: Config,
    base_dir: Path,
    store: SinkStore,
    directory: Mapping[str, Client] | None = None,
    assets: Mapping[str, Asset] | None = None,
) -> list[TicketSink]:
    """One outbox consumer per configured helpdesk sink; ``directory`` and ``assets`` (the
    loaded clients and assets, by id) give the texts a person reads their names and language."""
    sinks: list[TicketSink] = []
    for s in config.sinks:
        clients = None if s.clients is None else frozenset(s.clients)
        match s:
            case WebhookSinkConfig():
                sinks.append(WebhookSink(s.name, s.url, base_dir / s.secret_file, store, clients))
            case EmailSinkConfig():
                smtp = SmtpClient(
                    s.url,
                    tls=s.tls,
                    ca_file=None if s.ca_file is None else base_dir / s.ca_file,
                    username=s.username,
                    password_file=None if s.password_file is None else base_dir / s.password_file,
                )
                sinks.append(
                    EmailSink(
                        s.name,
                        smtp,
                        s.sender,
                        s.to,
                        store,
                        clients,
                        directory=directory or {},
                        assets=assets or {},
                        public_url=config.public_url,
                    )
                )
            case RedmineSinkConfig():
                sinks.append(
                    RedmineSink(
                        s.name,
                        RedmineApi(s.url, base_dir / s.api_key_file),
                        store,
                        clients,
                        projects=s.projects,
                        custom_field_id=s.custom_field_id,
                        trackers=s.trackers,
                        priorities=s.priorities,
                        resolved_status_id=s.resolved_status_id,
                        reopened_status_id=s.reopened_status_id,
                        directory=directory or {},
                        assets=assets or {},
                        public_url=config.public_url,
                    )
                )
            case _:
                raise NotImplementedError(f"sinks: kind {s.kind} is not built yet")
    return sinks


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with everything derived from it."""

    config: Config
    base_dir: Path
    rules: list[Rule]
    clients: dict[str, Client]
    assets: dict[str, Asset]
    tokens: TokenRegistry
    path: Path | None = None  # the file it was read from (absolute); None: parsed from data


# A discriminated union's error names the item; the field is its tag.
_TAGGED: dict[str, tuple[str, ...]] = {
    "union_tag_invalid": ("kind",),
    "union_tag_not_found": ("kind",),
}


def _field(loc: tuple[Any, ...]) -> str:
    # The kind pydantic adds to the place of a discriminated union's item.
    if len(loc) > 2 and loc[0] == "sinks" and loc[2] in SINK_KINDS:
        loc = loc[:2] + loc[3:]
    if len(loc) > 3 and loc[:2] == ("oncall", "channels") and loc[3] in CHANNEL_KINDS:
        loc = loc[:3] + loc[4:]
    return ".".join(str(part) for part in loc) or "(top level)"


def _redmine_problems(i: int, sink: RedmineSinkConfig, clients: set[str]) -> list[str]:
    """Every hospital the sink covers has a Redmine project (its own or the default), and the
    projects map names only known hospitals."""
    problems = [
        f"sinks.{i}.projects.{client_id}: unknown client {client_id!r} (or use 'default')"
        for client_id in sink.projects
        if client_id != "default" and client_id not in clients
    ]
    if "default" not in sink.projects:
        covered = sink.clients if sink.clients is not None else sorted(clients)
        missing = [c for c in covered if c in clients and c not in sink.projects]
        if missing:
            problems.append(
                f"sinks.{i}.projects: no Redmine project for {', '.join(missing)}: "
                "add them, or a default"
            )
    return problems


def _email_problems(sink: EmailSinkConfig) -> list[str]:
    """What the SMTP client and the addresses of an e-mail sink would refuse at start."""
    problems = []
    try:
        SmtpClient(
            sink.url,
            username=sink.username,
            password_file=None if sink.password_file is None else Path(sink.password_file),
        )
    except ValueError as exc:
        problems.append(str(exc))
    for setting, value in [
        ("from", sink.sender),
        *((f"to.{j}", to) for j, to in enumerate(sink.to)),
    ]:
        try:
            mailbox(value, setting)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _oncall_problems(config: Config, base_dir: Path) -> list[str]:
    """The oncall section against the rest: people and channels that exist and reach them,
    shifts of known people and hospitals that overlap only with distinct priorities, escalation
    steps naming people or rotas, owner-only secret files."""
    from bridge.delivery.oncall.channels import body_problem
    from bridge.delivery.oncall.links import load_link_key
    from bridge.delivery.oncall.rota import shift_problems

    oncall = config.oncall
    if oncall is None:
        return []
    problems: list[str] = []
    clients = {c.id for c in config.clients}
    people: set[str] = set()
    for i, person in enumerate(oncall.people):
        field = f"oncall.people.{i}"
        if person.id in people:
            problems.append(f"{field}.id: duplicate person id {person.id!r}")
        people.add(person.id)
        if person.email is not None:
            try:
                mailbox(person.email, f"{field}.email")
            except ValueError as exc:
                problems.append(str(exc))
        for setting in ("channels", "fallback_channels"):
            for j, name in enumerate(getattr(person, setting)):
                channel = oncall.channels.get(name)
                if channel is None:
                    known = ", ".join(sorted(oncall.channels)) or "none configured"
                    problems.append(
                        f"{field}.{setting}.{j}: unknown channel {name!r} (known: {known})"
                    )
                elif channel.kind == "email" and person.email is None:
                    problems.append(f"{field}.email: needed by the e-mail channel {name!r}")
                elif channel.kind == "webhook" and person.phone is None:
                    problems.append(f"{field}.phone: needed by the SMS channel {name!r}")
        for j, name in enumerate(person.fallback_channels):
            if name in person.channels:
                problems.append(
                    f"{field}.fallback_channels.{j}: {name!r} already pages in channels"
                )
    for i, shift in enumerate(oncall.shifts):
        if shift.person not in people:
            problems.append(f"oncall.shifts.{i}.person: unknown person {shift.person!r}")
        for j, client_id in enumerate(shift.clients or ()):
            if client_id not in clients:
                problems.append(f"oncall.shifts.{i}.clients.{j}: unknown client {client_id!r}")
    problems += shift_problems(oncall)
    rotas = {shift.rota for shift in oncall.shifts}
    for i, step in enumerate(oncall.escalation):
        for j, target in enumerate(step.then):
            rota = target.removeprefix("rota:")
            if rota in rotas if target.startswith("rota:") else target in people:
                continue
            known = ", ".join(sorted(rotas)) or "none"
            problems.append(
                f"oncall.escalation.{i}.then.{j}: {target!r} is neither a person id nor "
                f"rota:NAME of a rota of oncall.shifts (rotas: {known})"
            )
    if oncall.link_key_file is not None and config.public_url is None:
        problems.append(
            "oncall.link_key_file: pages carry an acknowledgment link only with public_url "
            "(where the engineer's phone reaches this bridge): set it"
        )
    for j, client_id in enumerate(oncall.page_outside_service_hours):
        if client_id not in clients:
            problems.append(f"oncall.page_outside_service_hours.{j}: unknown client {client_id!r}")
    secrets: list[tuple[str, str | None]] = [("oncall.link_key_file", oncall.link_key_file)]
    for name, channel in oncall.channels.items():
        field = f"oncall.channels.{name}"
        if isinstance(channel, EmailChannel):
            secrets.append((f"{field}.password_file", channel.password_file))
            password_file = None if channel.password_file is None else Path(channel.password_file)
            try:
                SmtpClient(channel.url, username=channel.username, password_file=password_file)
            except ValueError as exc:
                problems.append(f"{field}.{exc}")
            try:
                mailbox(channel.sender, f"{field}.from")
            except ValueError as exc:
                problems.append(str(exc))
            if channel.ca_file is not None and not (base_dir / channel.ca_file).is_file():
                problems.append(
                    f"{field}.ca_file: no such file {str(base_dir / channel.ca_file)!r}"
                )
        else:
            secrets.append((f"{field}.secret_file", channel.secret_file))
            problem = body_problem(name, channel)
            if problem:
                problems.append(problem)
    for field, value in secrets:
        problem = value and secret_file_problem(base_dir / value)
        if problem:
            problems.append(f"{field}: {problem}")
    key_file = None if oncall.link_key_file is None else base_dir / oncall.link_key_file
    if key_file is not None and not secret_file_problem(key_file):
        try:
            load_link_key(key_file)  # long enough
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _dependency_cycles(config: Config) -> list[str]:
    """An asset that depends on itself through its dependencies has no root cause."""
    parent = {a.id: a.depends_on for a in config.assets}
    problems = []
    for i, asset in enumerate(config.assets):
        seen = [asset.id]
        at = parent.get(asset.id)
        while at is not None and at in parent:
            if at == asset.id:
                chain = " -> ".join([*seen, at])
                problems.append(f"assets.{i}.depends_on: a dependency cycle: {chain}")
                break
            if at in seen:
                break  # a cycle further up, reported at its own assets
            seen.append(at)
            at = parent[at]
    return problems


def _user_problems(config: Config, clients: set[str]) -> list[str]:
    """Users with unique names that no token has, a person's role of a known hospital, and a
    password that is an argon2id hash (never the password itself, which is never quoted)."""
    from bridge.users import password_hash_problem

    problems: list[str] = []
    tokens = {token.name.casefold() for token in config.tokens}
    names: set[str] = set()
    for i, user in enumerate(config.users):
        field = f"users.{i}"
        if user.name in names:
            problems.append(f"{field}.name: duplicate user name {user.name!r}")
        names.add(user.name)
        if user.name.casefold() in tokens:
            problems.append(
                f"{field}.name: {user.name!r} is also a token's name; the audit trail names "
                "both by it: give the user another name"
            )
        if user.name in ("dyzur", "unknown"):
            problems.append(f"{field}.name: {user.name!r} is reserved for dyzur's own events")
        try:
            role, client = parse_role(user.role)
        except ValueError as exc:
            problems.append(f"{field}.role: {exc}")
        else:
            if role.value == "agent":
                problems.append(
                    f"{field}.role: a user is a person: engineer, admin or client:<id> "
                    "(agents use tokens)"
                )
            if client is not None and client not in clients:
                problems.append(f"{field}.role: unknown client {client!r}")
        problem = password_hash_problem(user.password)
        if problem:
            problems.append(f"{field}.password: {problem}")
    return problems


def _cross_check(config: Config, base_dir: Path) -> list[str]:
    problems: list[str] = []
    if config.coordination is not None and not config.store.startswith(
        ("postgresql://", "postgres://")
    ):
        problems.append(
            "coordination: several bridges share a PostgreSQL store (store: "
            "postgresql://USER@HOST/DATABASE); an SQLite file belongs to one machine"
        )
    listen = config.listen
    if (listen.tls_cert is None) != (listen.tls_key is None):
        problems.append("listen: tls_cert and tls_key go together")
    for name in ("tls_cert", "tls_key"):
        value = getattr(listen, name)
        if value is not None and not (base_dir / value).is_file():
            problems.append(f"listen.{name}: no such file {str(base_dir / value)!r}")
    clients: set[str] = set()
    for i, client in enumerate(config.clients):
        if client.id in clients:
            problems.append(f"clients.{i}.id: duplicate client id {client.id!r}")
        clients.add(client.id)
    assets: set[str] = set()
    for i, asset in enumerate(config.assets):
        if asset.id in assets:
            problems.append(f"assets.{i}.id: duplicate asset id {asset.id!r}")
        assets.add(asset.id)
        if asset.client not in clients:
            problems.append(f"assets.{i}.client: unknown client {asset.client!r}")
    owner = {asset.id: asset.client for asset in config.assets}
    for i, asset in enumerate(config.assets):
        if asset.depends_on is None:
            continue
        if asset.depends_on not in owner:
            problems.append(f"assets.{i}.depends_on: unknown asset {asset.depends_on!r}")
        elif owner[asset.depends_on] != asset.client:
            # The client's token sees its assets' dependencies (GET /api/v1/assets): a
            # dependency never reaches into another hospital's inventory.
            problems.append(
                f"assets.{i}.depends_on: asset {asset.depends_on!r} belongs to client "
                f"{owner[asset.depends_on]!r}, not {asset.client!r}; an asset may depend "
                "only on an asset of its own client"
            )
    problems += _dependency_cycles(config)
    for client_id in config.incidents.storm.clients:
        if client_id not in clients:
            problems.append(f"incidents.storm.clients.{client_id}: unknown client {client_id!r}")
    siem_names: set[str] = set()
    for i, dest in enumerate(config.siem):
        if dest.name in siem_names:
            problems.append(f"siem.{i}.name: duplicate destination name {dest.name!r}")
        siem_names.add(dest.name)
        try:
            Destination.from_url(dest.name, dest.url)
        except ValueError as exc:
            problems.append(f"siem.{i}.url: {exc}")
        for client_id in dest.clients or ():
            if client_id not in clients:
                problems.append(f"siem.{i}.clients: unknown client {client_id!r}")
        for name in ("ca_file", "client_cert", "client_key"):
            value = getattr(dest, name)
            if value is not None and not (base_dir / value).is_file():
                problems.append(f"siem.{i}.{name}: no such file {str(base_dir / value)!r}")
        if dest.client_key and not dest.client_cert:
            problems.append(f"siem.{i}.client_key: needs client_cert")
    sink_names: set[str] = set()
    for i, sink in enumerate(config.sinks):
        if sink.name in sink_names:
            problems.append(f"sinks.{i}.name: duplicate sink name {sink.name!r}")
        sink_names.add(sink.name)
        for client_id in sink.clients or ():
            if client_id not in clients:
                problems.append(f"sinks.{i}.clients: unknown client {client_id!r}")
        for secret in SINK_SECRETS:
            value = getattr(sink, secret, None)
            problem = value and secret_file_problem(base_dir / value)
            if problem:
                problems.append(f"sinks.{i}.{secret}: {problem}")
        if isinstance(sink, EmailSinkConfig):
            problems.extend(f"sinks.{i}.{problem}" for problem in _email_problems(sink))
        ca_file = getattr(sink, "ca_file", None)
        if ca_file is not None and not (base_dir / ca_file).is_file():
            problems.append(f"sinks.{i}.ca_file: no such file {str(base_dir / ca_file)!r}")
        if isinstance(sink, RedmineSinkConfig):
            problems += _redmine_problems(i, sink, clients)
    if config.ssh is not None:
        if config.ssh.key_file is None and not config.ssh.use_agent:
            problems.append("ssh.key_file: a key file, or use_agent: true")
        if config.ssh.key_file and not (base_dir / config.ssh.key_file).is_file():
            problems.append(f"ssh.key_file: no such file {str(base_dir / config.ssh.key_file)!r}")
    names: set[str] = set()
    hashes: set[str] = set()
    for i, token in enumerate(config.tokens):
        if token.name in names:
            problems.append(f"tokens.{i}.name: duplicate token name {token.name!r}")
        names.add(token.name)
        if token.sha256 in hashes:
            problems.append(f"tokens.{i}.sha256: the same token is configured twice")
        hashes.add(token.sha256)
        try:
            role, role_client = parse_role(token.role)
        except ValueError as exc:
            problems.append(f"tokens.{i}.role: {exc}")
            continue
        if role_client is not None and role_client not in clients:
            problems.append(f"tokens.{i}.role: unknown client {role_client!r}")
        if token.client is not None:
            if role.value != "agent":
                problems.append(f"tokens.{i}.client: only agent tokens are scoped by client")
            elif token.client not in clients:
                problems.append(f"tokens.{i}.client: unknown client {token.client!r}")
    problems += _oncall_problems(config, base_dir)
    problems += _user_problems(config, clients)
    return problems


def parse_config(data: Any, source: str, base_dir: Path) -> LoadedConfig:
    """Validate parsed YAML; raises ConfigError naming every bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of settings"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            source,
            [f"{_field(e['loc'] + _TAGGED.get(e['type'], ()))}: {e['msg']}" for e in exc.errors()],
        ) from None
    problems = _cross_check(config, base_dir)
    if problems:
        raise ConfigError(source, problems)
    specs = [s if s.startswith("builtin:") else str(base_dir / s) for s in config.rule_files]
    try:
        rules = load_rule_files(specs)
    except RuleFileError as exc:
        raise ConfigError(source, [f"rule_files: {exc}"]) from None
    entries = []
    for token in config.tokens:
        role, client = parse_role(token.role)
        entries.append((token.sha256, Principal(token.name, role, client or token.client)))
    return LoadedConfig(
        config=config,
        base_dir=base_dir,
        rules=rules,
        clients={c.id: c for c in config.clients},
        assets={a.id: a for a in config.assets},
        tokens=TokenRegistry(entries),
    )


def load_config(path: Path | str) -> LoadedConfig:
    path = Path(path)
    try:
        data = load_yaml(path)
    except YamlError as exc:
        raise ConfigError(str(path), [exc.located]) from None
    return replace(parse_config(data, str(path), path.resolve().parent), path=path.resolve())
