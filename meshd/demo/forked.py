"""meshd commands run as forks of one warm process instead of a cold `python -m meshd` each.

A cold start imports meshd's whole stack (kubernetes, cryptography, pyroute2, aiohttp): about a second on
a normal host, and 11-137 s in the test VM, where Python runs emulated. multiprocessing's fork server
imports it once; each command is a fork of that server which enters its node's network namespace and
calls `meshd.cli.main(argv)`, exactly what the console script calls. Each is a separate, real process,
stopped by its PID like any other (`ip netns exec` also gives a command its own /sys and /etc/netns
mounts: meshd reads neither).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, ForkServerProcess
from pathlib import Path

from meshd.rtnl import enter_netns

_PACKAGES = ("meshd", "overlay", "vxlan", "keys")
_KUBERNETES = ("meshd.datastore.k8s_", "meshd.datastore.kubernetes", "meshd.datastore.lease")
_ROOT = Path(__file__).resolve().parents[2]
_context: list[ForkServerContext] = []


def _modules() -> list[str]:
    """What the server preloads: every module of meshd's packages, found by file (nothing imported here),
    but the Kubernetes datastore's. Those load the Kubernetes client (seconds in the VM), which an agent on
    the file datastore never imports: the agents that use it import it themselves."""
    names = []
    for top in _PACKAGES:
        for path in sorted((_ROOT / top).rglob("*.py")):
            parts = path.relative_to(_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if parts[-1] != "__main__" and not name.startswith(_KUBERNETES):
                names.append(name)
    return names


def _server() -> ForkServerContext:
    if not _context:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_modules())
        _context.append(ctx)
    return _context[0]


def drop_inherited() -> None:
    """Mark every open descriptor close-on-exec (a fork server's child holds the server's pipes)."""
    for fd in (int(name) for name in os.listdir("/proc/self/fd")):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            os.set_inheritable(fd, False)


@dataclass(frozen=True)
class _Call:
    """One command for the fork server: what to run, where, with what, output where."""

    netns: str | None
    argv: list[str]
    out: str
    err: str
    env: dict[str, str]
    cwd: str


def _main(call: _Call) -> None:
    """In the fork: the caller's environment and directory, output to files, none of the fork server's
    own descriptors for what the command starts (wireguard-go), into the namespace, then the command,
    and its exit handlers (multiprocessing ends a fork with os._exit, which skips them)."""
    os.environ.clear()
    os.environ.update(call.env)
    os.chdir(call.cwd)
    drop_inherited()
    for fileno, path in ((1, call.out), (2, call.err)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        os.dup2(fd, fileno)  # inheritable again: fds 0-2 are the command's stdio
        os.close(fd)
    if call.netns is not None:
        enter_netns(call.netns)
    from meshd.cli.main import main

    try:
        code = main(call.argv)
    finally:
        atexit._run_exitfuncs()
    sys.exit(code)


class Forked:
    """A forked meshd command, with the part of `subprocess.Popen` the lab and the tests use."""

    def __init__(self, proc: ForkServerProcess, argv: Sequence[str]) -> None:
        self._proc = proc
        self.args = ["meshd", *argv]
        assert proc.pid is not None
        self.pid: int = proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    def poll(self) -> int | None:
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        code = self._proc.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._proc.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(netns: str | None, argv: Sequence[str], log: Path, err: Path | None = None) -> Forked:
    """`meshd ARGV` in namespace `netns`, its output appended to `log` (its stderr to `err` if given)."""
    call = _Call(netns, list(argv), str(log), str(err or log), dict(os.environ), os.getcwd())
    proc = _server().Process(target=_main, args=(call,), daemon=True)
    proc.start()
    return Forked(proc, argv)


def run(netns: str | None, argv: Sequence[str], log: Path, *, timeout: float) -> tuple[int, str, str]:
    """`meshd ARGV` in `netns` to its end: (exit code, stdout, stderr), kept in `log` and `log`.err."""
    err = log.with_name(log.name + ".err")
    for path in (log, err):
        path.unlink(missing_ok=True)
    proc = start(netns, argv, log, err)
    try:
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out, errors = (p.read_text(errors="replace") if p.exists() else "" for p in (log, err))
    return code, out, errors
