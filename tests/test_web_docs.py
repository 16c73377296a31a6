"""/docs (Swagger UI) and /redoc with every script, stylesheet and image served by the bridge
itself (issue 19): in Debian's Chromium against a real bridge process, each page shows the API
and asks nothing of another host; in process, their HTML names no other host, their assets
answer, and the package ships them."""

from __future__ import annotations

import asyncio
import re
import tomllib

import pytest
import yaml

from tests.conftest import config_data, free_port
from tests.processes import ROOT, RunningBridge

DOCS = ROOT / "bridge" / "web" / "static" / "docs"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    config = tmp_path_factory.mktemp("docs") / "dyzur.yaml"
    config.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    bridge = RunningBridge(config, free_port())
    yield bridge
    bridge.stop()


def own_files_only(seen, origin: str) -> None:
    """Every request the page made went to ``origin``, and the browser refused nothing."""
    assert seen.elsewhere(origin) == []
    assert seen.errors == []


def test_swagger_ui_shows_the_api_from_the_bridges_own_files(running, browser_page):
    from playwright.sync_api import expect

    page = browser_page.page
    page.goto(f"{running.url}/docs")
    samples = page.locator(
        ".opblock", has=page.locator('.opblock-summary-path[data-path="/api/v1/samples"]')
    )
    expect(samples.locator(".opblock-summary-method")).to_have_text("POST")
    expect(samples).to_be_visible()
    # "Try it out" calls the bridge itself (the page's CSP lets it reach its own origin).
    health = page.locator(
        ".opblock", has=page.locator('.opblock-summary-path[data-path="/healthz"]')
    )
    health.locator(".opblock-summary-control").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    expect(health.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")

    own_files_only(browser_page, running.url)
    loaded = {u.removeprefix(running.url) for u in browser_page.requests}
    assert {
        "/docs",
        "/static/docs/swagger-ui/swagger-ui-bundle.js",
        "/static/docs/swagger-ui/swagger-ui.css",
        "/static/docs/swagger-init.js",
        "/openapi.json",
        "/healthz",
    } <= loaded


def test_redoc_shows_the_api_from_the_bridges_own_files(running, browser_page):
    from playwright.sync_api import expect

    page = browser_page.page
    page.goto(f"{running.url}/redoc")
    endpoint = page.locator("button", has=page.locator(".http-verb.post")).filter(
        has_text=re.compile(r"^post/api/v1/samples$")
    )
    expect(endpoint).to_be_visible()
    expect(page.get_by_role("heading", name="Push Samples")).to_be_visible()
    # The search runs in Redoc's worker (built from a blob: URL of the page's own origin).
    page.get_by_role("textbox", name="Search").fill("samples")
    found = page.locator('[data-role="search:results"]').get_by_text("Push Samples")
    expect(found).to_be_visible()
    found.click()
    expect(page).to_have_url(re.compile(r"/redoc#.+"))

    own_files_only(browser_page, running.url)
    loaded = {u.removeprefix(running.url) for u in browser_page.requests}
    assert {"/redoc", "/static/docs/redoc/redoc.standalone.js", "/openapi.json"} <= loaded


def test_asyncio_runs_in_a_test_after_the_browser_tests():
    # Playwright's sync API leaves its loop marked running on this thread between its calls;
    # the fixtures unmark it for the tests that do not use the browser.
    assert asyncio.run(asyncio.sleep(0, "ran")) == "ran"


# --- in process ----------------------------------------------------------------------------

URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""", re.IGNORECASE)
REFERENCE = re.compile(r"""(?:src|href|spec-url|data-openapi-url)\s*=\s*["']([^"']*)["']""")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_name_no_other_host_and_their_assets_answer(api, path):
    page = api.get(path)
    assert page.status_code == 200
    assert URL.findall(page.text) == []
    references = REFERENCE.findall(page.text)
    assert "/openapi.json" in references
    for url in references:
        assert url.startswith("/"), url
        asset = api.get(url)
        assert asset.status_code == 200, url

    # Scripts of the bridge's own origin only: no inline script, no eval, no other host.
    policy = dict(
        d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert not URL.findall(page.headers["content-security-policy"])
    assert page.headers["x-frame-options"] == "DENY"


def test_the_vendored_scripts_name_no_cdn_they_load_from():
    # Redoc's sidebar loaded its logo from cdn.redoc.ly; the vendored copy does not.
    redoc = (DOCS / "redoc" / "redoc.standalone.js").read_text(encoding="utf-8")
    assert "cdn.redoc.ly" not in redoc and "fonts.googleapis.com" not in redoc
    init = (DOCS / "swagger-init.js").read_text(encoding="utf-8")
    assert "validatorUrl: null" in init


def test_the_package_ships_every_docs_asset_and_its_license():
    """pyproject.toml's package data for bridge.web covers every file under static/docs/."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["bridge.web"]
    web = ROOT / "bridge" / "web"
    shipped = {p for pattern in patterns for p in web.glob(pattern) if p.is_file()}
    files = {p for p in DOCS.rglob("*") if p.is_file()}
    assert files - shipped == set()
    names = {p.relative_to(DOCS).as_posix() for p in files}
    assert {"swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE", "README.md"} <= names


def test_fastapis_own_cdn_pages_are_off(api):
    # The bridge serves /docs and /redoc itself; FastAPI's oauth2 redirect page is not there.
    assert api.get("/docs/oauth2-redirect").status_code == 404
    assert api.app.docs_url is None and api.app.redoc_url is None
    assert api.get("/openapi.json").status_code == 200
