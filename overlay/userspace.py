"""WireGuard in userspace: a detached wireguard-go per device, configured over its UAPI unix socket.

wireguard-go is started in its own session with its output in a log file, so it outlives the agent: an
agent restart adopts the running instance through its socket (peers and sessions intact). Deleting the
link makes wireguard-go exit; SIGTERM to the recorded PID (after checking its command line) is the
last resort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from keys.values import PrivateKey, PublicKey
from meshd.core.actions import AddPeer, PeerAction, UpdatePeer
from meshd.core.state import WireGuardDeviceSpec, WireGuardReading
from meshd.errors import PermanentError, TransientError, UnsupportedError
from meshd.netlink import NetlinkSocket
from overlay import uapi, uapi_get, wireguard
from overlay.device import KeyedDevice
from overlay.wireguard import DEFAULT_RUN_DIR

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = Path("/var/run/wireguard")
READ_LIMIT = 16 * 1024 * 1024
POLL = 0.02
START_POLL = 0.005  # while a new wireguard-go comes up (its socket appears ~20 ms after the start)


SLOWEST_SET = 200_000
"""Bytes a second wireguard-go is allowed to take a `set` at: a large set gets that much more time than
`timeout` (5000 new peers are about 1 MB: 5 s more; this machine takes them at about 4 MB/s)."""


class UapiClient:
    """One UAPI operation per connection, each bounded by `timeout` seconds (more for a large set)."""

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._peers: uapi_get.PeerMemo = {}  # the last read's peers, reused while their lines are unchanged

    async def _exchange(self, request: str, operation: str) -> str:
        timeout = self.timeout + len(request) / SLOWEST_SET
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(self.path), limit=READ_LIMIT)
                try:
                    writer.write(request.encode("ascii"))
                    await writer.drain()
                    reply = await reader.readuntil(b"\n\n")
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (FileNotFoundError, ConnectionError, asyncio.IncompleteReadError) as exc:
            raise TransientError(
                f"{operation}: wireguard-go socket {self.path} not answering ({exc})"
            ) from exc
        except TimeoutError as exc:
            raise TransientError(f"{operation}: no reply from {self.path} in {timeout:.1f}s") from exc
        except asyncio.LimitOverrunError as exc:
            raise uapi.UapiProtocolError(f"{operation}: UAPI reply larger than {READ_LIMIT} bytes") from exc
        except OSError as exc:
            raise PermanentError(f"{operation}: cannot use {self.path}: {exc.strerror}") from exc
        return reply.decode("ascii", errors="replace")

    async def get(self, operation: str) -> WireGuardReading:
        return uapi_get.parse_get(await self._exchange(uapi.GET_REQUEST, operation), self._peers)

    async def set(self, request: str, operation: str) -> None:
        uapi.check_reply(await self._exchange(request, operation), operation)


class WireGuardGo(KeyedDevice):
    """The `WireGuardDevice` port over wireguard-go. `netns`: a named namespace to act in (tests)."""

    def __init__(
        self,
        name: str,
        private_key: PrivateKey,
        netns: str | None = None,
        *,
        run_dir: Path = DEFAULT_RUN_DIR,
        socket_dir: Path = DEFAULT_SOCKET_DIR,
        binary: str = "wireguard-go",
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name, private_key, netns)
        self.run_dir = run_dir
        self.binary = binary
        self.timeout = timeout
        self.socket_path = socket_dir / f"{name}.sock"
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = run_dir / f"{name}.log"
        self._uapi = UapiClient(self.socket_path, timeout=timeout)

    # --- observe --------------------------------------------------------------------------------

    async def _get(self) -> WireGuardReading:
        return await self._uapi.get(f"reading WireGuard device {self.name}")

    async def observe_device(self) -> WireGuardReading | None:
        """One `get=1`. None when no wireguard-go serves the socket (missing, or refusing: it died); a
        socket that exists but does not answer is an error, not absence, so no second instance starts."""
        try:
            return await self._get()
        except TransientError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError | ConnectionRefusedError):
                raise
            pid = self.pid()
            if pid is not None:
                _alive(pid)  # reaps our child if it died, so no zombie stays behind
            return None

    def pid(self) -> int | None:
        """The wireguard-go PID recorded when it was started (by this agent or an earlier one)."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    # --- device ---------------------------------------------------------------------------------

    async def create(self, spec: WireGuardDeviceSpec) -> None:
        wireguard.check_spec(spec, name=self.name, public_key=self._public)
        if await self.observe_device() is not None:
            log.info("adopting the running wireguard-go for %s (pid %s)", self.name, self.pid())
        else:
            await self._start()
        async with NetlinkSocket(netns=self.netns) as sock:
            await sock.set_up(self.name)
        await self.configure(spec)

    async def _set_device(self, key: PrivateKey | None, port: int | None) -> None:
        what = " and ".join(s for s in ("private key" if key else "", f"port {port}" if port else "") if s)
        log.info("setting %s on WireGuard device %s (key %s...)", what, self.name, self._public.short)
        request = uapi.encode_device(private_key=key, listen_port=port)
        await self._uapi.set(request, f"configuring WireGuard device {self.name}")

    async def delete(self) -> None:
        pid = self.pid()
        async with NetlinkSocket(netns=self.netns) as sock:
            deleted = await sock.delete_link(self.name)
        if deleted:
            log.info("deleted link %s; its wireguard-go exits with it", self.name)
        if not await self._wait_gone(pid) and pid is not None and _is_wireguard_go(pid, self.name):
            log.warning("wireguard-go %s (pid %s) still running after link delete: SIGTERM", self.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            await self._wait_gone(pid)
        if self.socket_path.exists() or (pid is not None and _alive(pid)):
            raise PermanentError(f"wireguard-go for {self.name} (pid {pid}) did not go away")
        self.pid_file.unlink(missing_ok=True)

    async def _wait_gone(self, pid: int | None) -> bool:
        """Wait (bounded) for the socket to disappear and the process to end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while self.socket_path.exists() or (pid is not None and _alive(pid)):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL)
        return True

    # --- process --------------------------------------------------------------------------------

    async def _start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        argv = ns_argv(self.netns, [self.binary, "-f", self.name])
        try:
            pid = await asyncio.to_thread(_spawn, argv, self.log_file)
        except FileNotFoundError as exc:
            raise UnsupportedError(f"cannot start {argv[0]}: not found on PATH") from exc
        except OSError as exc:
            raise PermanentError(f"starting wireguard-go for {self.name}: {exc.strerror}") from exc
        self.pid_file.write_text(f"{pid}\n")
        log.info("started wireguard-go for %s (pid %s, log %s)", self.name, pid, self.log_file)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while loop.time() < deadline:
            if not _alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise PermanentError(
                    f"wireguard-go for {self.name} exited before creating {self.socket_path}; "
                    f"last log lines:\n{self._log_tail()}"
                )
            if await self.observe_device() is not None:
                return
            await asyncio.sleep(START_POLL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        raise PermanentError(
            f"wireguard-go for {self.name} did not create {self.socket_path} within {self.timeout}s; "
            f"last log lines:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    # --- peers ----------------------------------------------------------------------------------

    async def apply_peers(self, changes: Sequence[PeerAction]) -> None:
        """All of them in one UAPI set, validated whole before it is sent: one round trip, and wireguard-go
        takes its configuration lock once (a reader does not see, nor slow, the device half-way through:
        5000 new peers in sets of 500 let readers in between and took ~40% longer)."""
        if changes:
            await self._uapi.set(uapi.encode_peer_changes(changes), self._batch_op(changes))

    async def set_preshared_keys(self, changes: Sequence[tuple[PublicKey, bytes | None]]) -> None:
        """Set (None: clear) the preshared keys of existing peers; nothing else of them changes."""
        if changes:
            request = uapi.encode_preshared_keys(changes)
            await self._uapi.set(
                request, f"setting the preshared keys of {len(changes)} peers on {self.name}"
            )

    def _batch_op(self, batch: Sequence[PeerAction]) -> str:
        if len(batch) > 1:
            return f"changing {len(batch)} peers on {self.name}"
        (change,) = batch
        if isinstance(change, AddPeer):
            return self._peer_op("adding", change.peer.public_key, change.peer.node)
        verb = "updating" if isinstance(change, UpdatePeer) else "removing"
        return self._peer_op(verb, change.public_key, change.node)

    def _peer_op(self, verb: str, key: PublicKey, node: str) -> str:
        who = f"{node} ({key.short}...)" if node else f"{key.short}..."
        return f"{verb} peer {who} on {self.name}"


def ns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` as run inside `netns` (through `ip netns exec`), or unchanged for the current namespace."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def _spawn(argv: list[str], log_file: Path) -> int:
    """Start `argv` detached: own session, stdin /dev/null, stdout+stderr appended to `log_file`."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ]
        return os.posix_spawnp(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=actions,
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """True while `pid` runs. Reaps it when it is our child; a zombie of another parent counts as gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[0] != "Z"
    return done == 0


def _is_wireguard_go(pid: int, name: str) -> bool:
    """Guard against PID reuse: only signal a process whose command line is wireguard-go for `name`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and os.path.basename(argv[0]) == b"wireguard-go" and name.encode() in argv[1:]
