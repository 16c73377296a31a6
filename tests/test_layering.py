"""The import direction of DESIGN.md: agents -> collectors <- rules <- bridge."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("collectors", "rules", "bridge", "agents")
# What each package may import of the others.
ALLOWED = {
    "collectors": set(),
    "agents": {"collectors"},
    "rules": {"collectors"},
    "bridge": {"collectors", "rules"},
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_downward(package):
    for path in modules(package):
        others = (imports(path) & set(PACKAGES)) - {package}
        assert others <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {others}"


def test_collectors_core_imports_only_the_standard_library():
    # and PyYAML, the core install's one dependency (collectors/yamlfile.py, the YAML loader)
    for path in (ROOT / "collectors").glob("*.py"):
        outside = {m for m in imports(path) if m not in sys.stdlib_module_names}
        assert not outside - {"collectors", "yaml"}, f"{path.relative_to(ROOT)} imports {outside}"


def test_only_the_api_and_the_pages_import_fastapi_and_one_module_each_redis_and_psycopg():
    """DESIGN.md: only the coordination module imports redis, only the PostgreSQL store its
    driver (both optional extras: the bridge runs alone without them)."""
    for package in PACKAGES:
        for path in modules(package):
            rel = path.relative_to(ROOT).as_posix()
            names = imports(path)
            if not rel.startswith(("bridge/api/", "bridge/web/")):
                assert not names & {"fastapi", "starlette", "uvicorn"}, rel
            if rel != "bridge/store/redis_coordination.py":
                assert "redis" not in names, rel
            if rel != "bridge/store/postgres.py":
                assert not names & {"psycopg", "psycopg_pool"}, rel


def test_importing_collectors_agents_or_rules_pulls_no_web_stack():
    code = (
        "import sys, collectors, agents, rules.engine, rules.loader, bridge.tickets.lifecycle;"
        "bad = {'fastapi', 'starlette', 'uvicorn', 'redis', 'psycopg'} & set(sys.modules);"
        "sys.exit(', '.join(sorted(bad)) or None)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("package", ["bridge/api", "bridge/web"])
def test_the_api_and_the_pages_never_reach_into_a_store(package):
    """Routes call the services through narrow dependencies: no ``.store`` anywhere in
    bridge/api or bridge/web, and no store module imported there but its query types."""
    for path in modules(package):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr != "store", f"{rel}:{node.lineno} reaches into a store"
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("bridge.store."), f"{rel}:{node.lineno}"


def test_only_the_yaml_loader_parses_yaml():
    """One loader (collectors/yamlfile.py) reads dyzur's YAML files: the bridge's and the
    agent's configs, rule files, update plans."""
    readers = ["bridge/config.py", "agents/config.py", "agents/ssh_trust.py", "rules/loader.py"]
    readers += [p.relative_to(ROOT).as_posix() for p in modules("bridge/cli")]
    for rel in readers:
        source = (ROOT / rel).read_text()
        assert "safe_load" not in source and "yaml.load" not in source, rel


def test_a_bridge_alone_needs_neither_redis_nor_postgresql_installed():
    """The postgres and redis extras are optional: without them the bridge, its CLI and its
    SQLite store load, and a store URL needing the driver says which extra to install."""
    code = (
        "import sys; sys.modules.update(redis=None, psycopg=None, psycopg_pool=None);"
        "import bridge.service, bridge.cli, bridge.api;"
        "from bridge.store import open_store, StoreError\n"
        "try:\n    open_store('postgresql://dyzur@db/dyzur')\n"
        "except StoreError as exc:\n    print(exc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "pip install 'dyzur[bridge,postgres]'" in r.stdout
