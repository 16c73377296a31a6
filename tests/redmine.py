"""Debian's real Redmine for the tests: a copy of /usr/share/redmine in a temporary directory
with its own SQLite database, set up in one ``rails runner`` (migrations, Redmine's default
data in English, the REST API on, a ``dyzur`` custom field for every project and tracker, used
as a filter; dyzur's user, an engineer and an administrator, each with an API key) and served
by WEBrick on a free port of 127.0.0.1, stopped by its PID. Nothing is written outside the
temporary directory. Skips without Redmine on a dev machine; fails under CI=true."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import stop_process, wait_for

REDMINE = Path("/usr/share/redmine")
# The Debian Gemfile reads the database adapters from the system's instances; the copy's own.
RAILS_SERVER = ["ruby", "bin/rails", "server", "-u", "webrick", "-e", "production"]
DEBIAN_DATABASES = "/usr/share/redmine/{config,instances/*/config}/database.yml"

SETUP = r"""
# One process: the schema, Redmine's default data, then what the tests need; prints JSON.
require 'json'
ENV['VERBOSE'] = 'false'
ActiveRecord::Tasks::DatabaseTasks.migrate
ActiveRecord::Base.descendants.each(&:reset_column_information)
Redmine::DefaultData::Loader.load('en')
Setting.rest_api_enabled = '1'
Setting.default_language = 'en'
field = IssueCustomField.create!(
  name: 'dyzur', field_format: 'string', is_for_all: true, is_filter: true,
  searchable: true, visible: true, tracker_ids: Tracker.pluck(:id))
def user(login, first, last, admin: false)
  u = User.new(firstname: first, lastname: last, mail: "#{login}@example.test", language: 'en')
  u.login = login
  u.admin = admin
  u.password = u.password_confirmation = SecureRandom.hex(16)
  u.status = User::STATUS_ACTIVE
  u.save!
  {id: u.id, login: u.login, key: u.api_key}
end
puts JSON.generate(
  custom_field_id: field.id,
  users: {
    dyzur: user('dyzur', 'Dyżur', 'Bridge'),
    engineer: user('jan.kowalski', 'Jan', 'Kowalski'),
    admin: user('admin-tests', 'Admin', 'Tests', admin: true),
  },
  roles: Role.where(builtin: 0).map { |r| [r.name, r.id] }.to_h,
  trackers: Tracker.order(:position).map { |t| [t.name, t.id] }.to_h,
  statuses: IssueStatus.order(:position).map { |s| [s.name, s.id] }.to_h,
  priorities: IssuePriority.order(:position).map { |p| [p.name, p.id] }.to_h)
"""


def need_redmine() -> None:
    """Skip without Debian's redmine (and ruby) on a dev machine; under CI it must be there."""
    if (REDMINE / "bin" / "rails").is_file() and shutil.which("ruby"):
        return
    if os.environ.get("CI"):
        pytest.fail("redmine is required under CI but is not installed (apt-get install redmine)")
    pytest.skip("redmine not installed (apt-get install redmine redmine-sqlite)")


@dataclass(frozen=True)
class User:
    id: int
    login: str
    key: str


class Redmine:
    """One running Redmine; ``timings`` says how long each part of starting it took."""

    def __init__(self, workdir: Path) -> None:
        need_redmine()
        self.workdir = workdir
        self.root = workdir / "redmine"
        self.timings: dict[str, float] = {}
        started = time.monotonic()
        self._copy()
        self.timings["copy"] = time.monotonic() - started
        env = self._env()
        script = workdir / "setup.rb"
        script.write_text(SETUP)
        started = time.monotonic()
        done = subprocess.run(
            ["ruby", "bin/rails", "runner", str(script)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.timings["setup"] = time.monotonic() - started
        if done.returncode != 0:
            raise AssertionError(f"Redmine's setup failed:\n{done.stderr[-4000:]}")
        facts = json.loads(done.stdout.strip().splitlines()[-1])
        self.custom_field_id: int = facts["custom_field_id"]
        users = facts["users"]
        self.dyzur, self.engineer, self.admin = (
            User(**users[k]) for k in ("dyzur", "engineer", "admin")
        )
        self.roles: dict[str, int] = facts["roles"]
        self.trackers: dict[str, int] = facts["trackers"]
        self.statuses: dict[str, int] = facts["statuses"]
        self.priorities: dict[str, int] = facts["priorities"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "redmine.log"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [*RAILS_SERVER, "-b", "127.0.0.1", "-p", str(self.port)],
            cwd=self.root,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"redmine exited:\n{self.log.read_text(errors='replace')}")
            try:
                return httpx.get(f"{self.url}/users/current.json", timeout=2).status_code == 401
            except httpx.TransportError:
                return False

        try:
            wait_for(up, timeout=120, what="Redmine to answer")
        except AssertionError:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started
        self._projects = 0

    def _copy(self) -> None:
        """The application, without Debian's instances, lock file and database config."""

        def ignore(folder: str, names: list[str]) -> set[str]:
            if Path(folder) == REDMINE:
                return {"instances", "Gemfile.lock"} & set(names)
            if Path(folder) == REDMINE / "config":
                return {"database.yml"} & set(names)
            return set()

        shutil.copytree(REDMINE, self.root, symlinks=True, ignore=ignore)
        database = self.workdir / "redmine.sqlite3"
        config = f"production:\n  adapter: sqlite3\n  database: {database}\n  timeout: 5000\n"
        (self.root / "config" / "database.yml").write_text(config)
        gemfile = self.root / "Gemfile"
        gemfile.write_text(
            gemfile.read_text().replace(DEBIAN_DATABASES, str(self.root / "config/database.yml"))
        )
        (self.root / "Gemfile.local").write_text("gem 'webrick'\n")
        # Debian's multi-tenancy: the instance "default" lives in the copy.
        instance = self.root / "instances" / "default"
        for folder in ("config", "log", "tmp", "files", "public"):
            (instance / folder).mkdir(parents=True, exist_ok=True)
        (instance / "config" / "database.yml").write_text(config)
        (instance / "config" / "secret_key.txt").write_text(secrets.token_hex(32))

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("BUNDLE_GEMFILE", "REDMINE_INSTANCE", "X_DEBIAN_SITEID", "DATABASE_URL")
        }
        env.update(RAILS_ENV="production", REDMINE_LANG="en", TZ="UTC", HOME=str(self.workdir))
        return env

    def stop(self) -> None:
        stop_process(self.proc)

    # --- talking to it, as the people of the helpdesk do -----------------------------------

    def client(self, user: User) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-Redmine-API-Key": user.key}, timeout=30)

    def call(self, user: User, method: str, path: str, **kwargs) -> dict | None:
        """One REST call as ``user``; the answer's JSON (None when empty); fails on an error."""
        with self.client(user) as http:
            r = http.request(method, path, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content.strip() else None

    def project(self, identifier: str, *, dyzur_member: bool = True) -> str:
        """A new private project with dyzur's user as its Manager and the engineer as its
        Developer (Redmine's default roles)."""
        self.call(
            self.admin,
            "POST",
            "/projects.json",
            json={
                "project": {
                    "name": identifier,
                    "identifier": identifier,
                    "is_public": False,
                    "tracker_ids": list(self.trackers.values()),
                    "enabled_module_names": ["issue_tracking"],
                }
            },
        )
        members = [(self.engineer, "Developer")]
        if dyzur_member:
            members.append((self.dyzur, "Manager"))
        for user, role in members:
            self.call(
                self.admin,
                "POST",
                f"/projects/{identifier}/memberships.json",
                json={"membership": {"user_id": user.id, "role_ids": [self.roles[role]]}},
            )
        return identifier

    def issues(self, project: str) -> list[dict]:
        """Every issue of a project, any status, oldest first."""
        found = self.call(
            self.admin,
            "GET",
            "/issues.json",
            params={"project_id": project, "status_id": "*", "sort": "id", "limit": 100},
        )
        assert found is not None
        return found["issues"]

    def issue(self, issue_id: int | str) -> dict:
        """An issue with its journals."""
        found = self.call(self.admin, "GET", f"/issues/{issue_id}.json?include=journals")
        assert found is not None
        return found["issue"]
