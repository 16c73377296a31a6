"""`dyzur ssh trust HOST[:PORT]`: show an SSH host key's fingerprint and, once an engineer has
compared it with the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there),
record it in dyzur's known_hosts. dyzur never trusts a host key on its own.

Which known_hosts: the bridge's (``--config dyzur.yaml``: its ``ssh.known_hosts``, relative to
the config file, the one update runbooks use) or a file named directly (``--known-hosts``: an
agent's ssh collector's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collectors.ssh.known_hosts import KnownHosts, record, trust
from collectors.yamlfile import YamlError, load_yaml


class ConfigProblem(Exception):
    """The bridge's config names no known_hosts dyzur ssh trust can use."""


def bridge_known_hosts(config: str | Path) -> Path:
    """The known_hosts of the bridge's config: ``ssh.known_hosts``, relative to the config file
    (as the bridge reads it). Only that setting is read; ``dyzur check-config`` checks the rest."""
    path = Path(config)
    try:
        data = load_yaml(path)
    except YamlError as exc:
        raise ConfigProblem(str(exc)) from None
    ssh = data.get("ssh") if isinstance(data, dict) else None
    if ssh is None:
        raise ConfigProblem(
            f"{path}: no ssh section: the bridge records host keys in the known_hosts its "
            "ssh: section names (ssh: {known_hosts: known_hosts, key_file: ...}); for an "
            "agent's known_hosts give --known-hosts FILE"
        )
    known_hosts = ssh.get("known_hosts") if isinstance(ssh, dict) else None
    if not isinstance(known_hosts, str) or not known_hosts:
        raise ConfigProblem(f"{path}: ssh.known_hosts: a file name is required")
    return path.resolve().parent / known_hosts


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host.strip("[]"), int(port)
    return text.strip("[]"), 22


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dyzur ssh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("trust", help="show a host key's fingerprint and record it on confirmation")
    t.add_argument("host", help="HOST or HOST:PORT")
    where = t.add_mutually_exclusive_group()
    where.add_argument(
        "--config", "-c", help="the bridge's dyzur.yaml: record in its ssh.known_hosts"
    )
    where.add_argument("--known-hosts", help="a known_hosts file (an agent's ssh collector's)")
    t.add_argument("--yes", action="store_true", help="record without asking (scripts)")
    t.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.config is None and args.known_hosts is None:
        t.error(
            "where to record the key: give the bridge's config (--config dyzur.yaml, its "
            "ssh.known_hosts) or a known_hosts file (--known-hosts FILE)"
        )
    try:
        path = bridge_known_hosts(args.config) if args.config else Path(args.known_hosts)
    except ConfigProblem as exc:
        print(f"dyzur ssh trust: {exc}", file=sys.stderr)
        return 2
    host, port = _host_port(args.host)
    known = KnownHosts(path)
    try:
        key, fp, already = trust(known, host, port, args.timeout)
    except Exception as exc:  # unreachable, not SSH: say so plainly
        print(f"cannot read the host key of {host}:{port}: {exc}", file=sys.stderr)
        return 2
    print(f"{host}:{port} {key.get_name()} {fp}")
    if already:
        print("already trusted")
        return 0
    if known.lookup(host, port):
        print("WARNING: this differs from the key recorded for this host", file=sys.stderr)
    if not args.yes:
        answer = input("Does this fingerprint match the host's own? Record it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes", "t", "tak"):
            print("not recorded")
            return 1
    record(known, host, port, key)
    print(f"recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
