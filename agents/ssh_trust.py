"""`dyzur ssh trust HOST[:PORT]`: show an SSH host key's fingerprint and, once an engineer has
compared it with the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there),
record it in dyzur's known_hosts. dyzur never trusts a host key on its own."""

from __future__ import annotations

import argparse
import sys

from collectors.ssh.known_hosts import KnownHosts, record, trust


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
    t.add_argument("--known-hosts", required=True, help="dyzur's known_hosts file")
    t.add_argument("--yes", action="store_true", help="record without asking (scripts)")
    t.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    host, port = _host_port(args.host)
    known = KnownHosts(args.known_hosts)
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
    print(f"recorded in {args.known_hosts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
