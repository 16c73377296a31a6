"""Commands per second over one reused SSH connection to a real sshd on 127.0.0.1.

Starts OpenSSH's sshd (tests/sshd.py) with a fresh host key and client key, records the host
key, then runs N short commands (`true`) through the SSH runner and prints the time per
command; a run of the Nagios `check_dummy` plugin shows the same for a real check.

    python benchmarks/bench_ssh.py [--commands 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectors.ssh.known_hosts import KnownHosts, fetch_host_key  # noqa: E402
from collectors.ssh.runner import SshCredentials, SshRunner, SshTarget  # noqa: E402
from tests.sshd import Sshd, keygen  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sshd = Sshd(tmp_path / "sshd")
        key = keygen(tmp_path / "id_ed25519")
        sshd.authorize(Path(f"{key}.pub"))
        sshd.start()
        try:
            known = KnownHosts(tmp_path / "known_hosts")
            known.add("127.0.0.1", sshd.port, fetch_host_key("127.0.0.1", sshd.port))
            runner = SshRunner(known, SshCredentials(key_file=key))
            target = SshTarget("127.0.0.1", sshd.port)
            runner.run(target, "true")  # connect and authenticate once
            for command in ("true", "/usr/lib/nagios/plugins/check_dummy 0 ok"):
                started = time.perf_counter()
                for _ in range(args.commands):
                    runner.run(target, command)
                per = (time.perf_counter() - started) / args.commands
                print(
                    f"{command!r}: {args.commands} runs on one connection, "
                    f"{per * 1000:.2f} ms each, {1 / per:,.0f} commands/s"
                )
            runner.close()
        finally:
            sshd.stop()


if __name__ == "__main__":
    main()
