"""Commands per second over one reused SSH connection to a real sshd on 127.0.0.1: dyzur's SSH
runner beside OpenSSH's own client with ControlMaster, for a login with no shell rc and for one
whose rc is heavy.

Starts OpenSSH's sshd (tests/sshd.py) with a fresh host key and client key, records the host
key, then runs N short commands (`true`, and the Nagios `check_dummy` plugin as a real check)
for each login, through

- dyzur's SSH runner (paramiko, one connection opened once and reused), and
- OpenSSH's `ssh` with `ControlMaster=auto`, `ControlPersist=60`: one master connection, a
  new `ssh` process per command multiplexed over it (how a shell script would do it);

and prints the time per command, commands/s and the ratio side by side.

sshd runs every command through the login's shell, and bash reads ~/.bashrc first even for a
command (Debian builds it so). The logins, made when run as root (as tests/sshd.py makes them):

- `dyzur-runbook`: shell /bin/sh, which reads no rc file: the runner's own speed;
- `dyzur-heavyrc`: shell bash, whose ~/.bashrc sleeps `--rc-cost` seconds (0.13 s, what
  `pyenv init` in root's rc cost on the machine this was found on): what a heavy login rc on
  an AMMS host costs every check, without depending on what the machine's root rc runs;
- with `--root`, root itself, with whatever its rc runs.

Not root: the current user only (its rc as it is).

    python benchmarks/bench_ssh.py [--commands 200] [--rc-cost 0.13] [--root]
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectors.ssh.known_hosts import KnownHosts, fetch_host_key  # noqa: E402
from collectors.ssh.runner import SshCredentials, SshRunner, SshTarget  # noqa: E402
from tests.sshd import Sshd, dedicated_user, keygen, shared_dir, system_user  # noqa: E402

HEAVY_USER = "dyzur-heavyrc"
CHECK_DUMMY = "/usr/lib/nagios/plugins/check_dummy"
MARK = "DYZUR_BENCH_RC"  # the heavy rc sets it, so the benchmark sees that bash read the rc


@dataclass(frozen=True)
class Login:
    name: str
    label: str  # shell and rc, for the table
    rc_ran: str | None = None  # what $MARK reads when the rc ran (None: not checked)


def logins(rc_cost: float, with_root: bool) -> list[Login]:
    if os.geteuid() != 0:
        me = getpass.getuser()
        shell = Path(pwd.getpwnam(me).pw_shell).name
        return [Login(me, f"{shell}, its own rc (not root: no users made)")]
    found = [Login(dedicated_user(), "sh, no rc")]
    rc = f"sleep {rc_cost}\nexport {MARK}=ran\n"  # before anything that returns early
    found.append(
        Login(system_user(HEAVY_USER, "/bin/bash", rc=rc), f"bash, rc: sleep {rc_cost}", "ran")
    )
    if with_root:
        found.append(Login("root", f"{Path(pwd.getpwnam('root').pw_shell).name}, its own rc"))
    return found


def time_runner(runner: SshRunner, target: SshTarget, command: str, n: int) -> float:
    """Seconds per command over the runner's one connection (opened before timing)."""
    runner.run(target, command, timeout=30)
    started = time.perf_counter()
    for _ in range(n):
        res = runner.run(target, command, timeout=30)
        if res.exit_code != 0:
            raise SystemExit(f"{command!r} as {target.user}: exit {res.exit_code}: {res.stderr}")
    return (time.perf_counter() - started) / n


def time_openssh(ssh: list[str], command: str, n: int) -> float:
    """Seconds per command, one `ssh` process each over the master (set up before timing)."""
    # output read as the runner reads it
    subprocess.run([*ssh, command], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run([*ssh, command], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return (time.perf_counter() - started) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=200, help="commands per figure")
    ap.add_argument(
        "--rc-cost", type=float, default=0.13, help="seconds the heavy login's ~/.bashrc sleeps"
    )
    ap.add_argument("--root", action="store_true", help="also log in as root, with its own rc")
    args = ap.parse_args()
    n = args.commands
    users = logins(args.rc_cost, args.root)
    commands = ["true"]
    if os.path.exists(CHECK_DUMMY):
        commands.append(f"{CHECK_DUMMY} 0 ok")
    with tempfile.TemporaryDirectory() as tmp, shared_dir(Path(tmp), "dyzur-bench-ssh-") as shared:
        tmp_path = Path(tmp)
        sshd = Sshd(shared / "sshd")  # its authorized keys are read as each login
        key = keygen(tmp_path / "id_ed25519")
        sshd.authorize(Path(f"{key}.pub"))
        sshd.start()
        control = tmp_path / "cm-%C"  # one master per login (%C hashes user, host, port)
        base = [
            "ssh", "-F", "/dev/null", "-i", str(key), "-p", str(sshd.port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "-o", f"ControlPath={control}",
        ]  # fmt: skip
        masters: list[list[str]] = []
        rows: list[tuple[str, Login, float, float]] = []
        try:
            known = KnownHosts(tmp_path / "known_hosts")
            known.add("127.0.0.1", sshd.port, fetch_host_key("127.0.0.1", sshd.port))
            runner = SshRunner(known, SshCredentials(key_file=key))
            for login in users:
                target = SshTarget("127.0.0.1", sshd.port, login.name)
                if login.rc_ran is not None:
                    got = runner.run(target, f'echo "${MARK}"', timeout=30).stdout.strip()
                    if got != login.rc_ran:
                        print(f"warning: {login.name}'s shell did not read its ~/.bashrc")
                ssh = [*base, "-o", "ControlMaster=auto", "-o", "ControlPersist=60"]
                ssh.append(f"{login.name}@127.0.0.1")
                masters.append([*base, "-O", "exit", f"{login.name}@127.0.0.1"])
                for command in commands:
                    ours = time_runner(runner, target, command, n)
                    theirs = time_openssh(ssh, command, n)
                    rows.append((command, login, ours, theirs))
            runner.close()
        finally:
            for stop in masters:
                subprocess.run(stop, capture_output=True, stdin=subprocess.DEVNULL)
            sshd.stop()
    report(rows, n)


def report(rows: list[tuple[str, Login, float, float]], n: int) -> None:
    print(
        f"{n} commands per figure, each client on one reused connection "
        "(dyzur: SSH runner; OpenSSH: ssh, ControlMaster=auto, ControlPersist=60); "
        "ratio: dyzur's commands/s ÷ OpenSSH's"
    )
    head = (
        f"{'command':<12} {'login':<15} {'shell, rc':<24} "
        f"{'dyzur ms':>9} {'dyzur/s':>8} {'openssh ms':>11} {'openssh/s':>10} {'ratio':>7}"
    )
    print(head)
    print("-" * len(head))
    for command, login, ours, theirs in rows:
        short = Path(command.split()[0]).name
        print(
            f"{short:<12} {login.name:<15} {login.label:<24} "
            f"{ours * 1000:>9.2f} {1 / ours:>8,.0f} {theirs * 1000:>11.2f} {1 / theirs:>10,.0f} "
            f"{theirs / ours:>6.1f}×"
        )
    # What the login's rc costs per command: each rc'd login against the one with none.
    by = {(c, login.name): (ours, theirs) for c, login, ours, theirs in rows}
    bare = rows[0][1].name if rows and rows[0][1].rc_ran is None else None
    for command, login, ours, theirs in rows:
        if bare is None or login.name == bare:
            continue
        ours0, theirs0 = by[(command, bare)]
        short = Path(command.split()[0]).name
        print(
            f"{short}: {login.name}'s rc costs {(ours - ours0) * 1000:.0f} ms per command "
            f"through dyzur ({1 / ours0:,.0f}/s -> {1 / ours:,.0f}/s), "
            f"{(theirs - theirs0) * 1000:.0f} ms through OpenSSH "
            f"({1 / theirs0:,.0f}/s -> {1 / theirs:,.0f}/s)"
        )


if __name__ == "__main__":
    main()
