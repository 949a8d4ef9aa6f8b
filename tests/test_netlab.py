"""The lab cleans up after itself: namespaces gone, and processes it ends are reaped (no zombies)."""

from __future__ import annotations

import os

import pytest

from meshd.demo.netlab import Lab, run

pytestmark = pytest.mark.netns


def test_close_reaps_a_detached_child_living_in_a_namespace() -> None:
    """Like wireguard-go started by the adapter: our child, not in `lab.procs`, found by `ip netns pids`.
    Once SIGTERM ends it, close() must reap it rather than wait for a zombie to vanish."""
    lab = Lab()
    try:
        ns = lab.ns("z")
        pid = os.posix_spawnp("ip", ["ip", "netns", "exec", ns, "sleep", "60"], dict(os.environ), setsid=True)
        for _ in range(200):
            if str(pid) in run(["ip", "netns", "pids", ns]).stdout.split():
                break
        else:
            raise AssertionError("the child never showed up in its namespace")
    finally:
        lab.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped by close()
    assert ns not in run(["ip", "netns", "list"]).stdout
