"""Processes and files that `up` creates, recorded in DIR/apiserver-state.json as they are created, so
`down` (even after an interrupted or killed `up`) stops exactly those PIDs and removes exactly those things."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE = "apiserver-state.json"


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): tells a reused PID from ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class State:
    """What one `up DIR` created."""

    dir: str
    netns: str
    address: str
    created_dir: bool = False
    created_netns: bool = False
    added_address: str | None = None  # "IP/32 dev lo" when `up` put the address there
    created: list[str] = field(default_factory=list)  # files and directories under DIR, in creation order
    pids: dict[str, list[int | str]] = field(default_factory=dict)  # name -> [pid, start time]
    argv: dict[str, list[str]] = field(default_factory=dict)  # name -> command line (for restarts)

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, directory: Path) -> State:
        return cls(**json.loads((directory / STATE).read_text()))

    def own(self, path: Path) -> Path:
        """Record that `up` creates `path` (under DIR) so that `down` removes it."""
        if str(path) not in self.created:
            self.created.append(str(path))
            self.save()
        return path

    def spawn(self, name: str, argv: list[str]) -> int:
        """Start `argv` in the namespace, in its own session, output to DIR/logs/NAME.log; record its PID."""
        log = Path(self.dir) / "logs" / f"{name}.log"
        with log.open("ab") as out, deferred_signals():  # never a child whose PID we did not record
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            self.pids[name] = [proc.pid, start_time(proc.pid) or ""]
            self.argv[name] = argv
            self.save()
        return proc.pid

    def running(self, name: str) -> bool:
        pid, started = self.pids.get(name, [0, ""])
        return alive(int(pid), str(started))

    def stop(self, name: str, *, timeout: float = 15) -> None:
        """SIGTERM our process (only if the PID is still the one we started), SIGKILL after `timeout`."""
        if name not in self.pids:
            return
        pid = int(self.pids[name][0])
        if self.running(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.running(name) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if self.running(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while self.running(name):
                    _reap(pid)
                    time.sleep(0.05)
        _reap(pid)
        del self.pids[name]
        self.save()


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block is done, then raise KeyboardInterrupt for the first."""
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, lambda n, _f: got.append(n))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            raise KeyboardInterrupt(signal.Signals(got[0]).name)


def alive(pid: int, started: str) -> bool:
    """True while the process we started as `pid` (at `started`) runs; a zombie has ended."""
    return bool(pid) and start_time(pid) == started and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _reap(pid: int) -> None:
    """Collect our own child's exit status (a no-op for processes a previous `up` started)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def ns_run(netns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


_PROBE = """\
import ssl, sys, urllib.request
url, ca, crt, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca) if ca else None
if ctx and crt:
    ctx.load_cert_chain(crt, key)
try:
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        print(r.status, r.read().decode(errors="replace")[:300].replace("\\n", " "))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(errors="replace")[:300].replace("\\n", " "))
except Exception as e:
    print(0, str(e).replace("\\n", " "))
"""


def probe(netns: str, url: str, *, ca: str = "", crt: str = "", key: str = "") -> tuple[int, str]:
    """GET `url` from inside `netns` (TLS with the given CA and client certificate): (status, text)."""
    res = ns_run(netns, sys.executable, "-c", _PROBE, url, ca, crt, key)
    head, _, text = res.stdout.strip().partition(" ")
    return (int(head) if head.isdigit() else 0), text or res.stderr.strip()[-300:]
