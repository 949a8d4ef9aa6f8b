"""`meshd run` flags read into the settings tree: no flag means the tree's own defaults (written once),
every link name is validated the same way, and a bad flag is a one-line usage error (exit 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from meshd.agent.settings import AgentSettings, Settings
from meshd.cli.flags import add_agent_flags, settings_from
from meshd.cli.main import main


@pytest.fixture(autouse=True)
def no_meshd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MESHD_")]:
        monkeypatch.delenv(name)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_agent_flags(parser)
    return parser.parse_args(list(argv))


def test_without_flags_the_settings_are_the_trees_defaults() -> None:
    assert settings_from(parse("--node-name", "n1")) == Settings(agent=AgentSettings(node_name="n1"))


def test_flags_land_in_their_group(tmp_path: Path) -> None:
    s = settings_from(
        parse(
            "--node-name", "n1", "--datastore", f"file:{tmp_path}", "--underlay-ip", "198.18.0.1",
            "--pod-cidr", "198.19.1.0/24", "--ipip-interface", "tun-x", "--metrics-addr", "127.0.0.1:0",
        )
    )  # fmt: skip
    assert s.datastore.file_dir == tmp_path and s.backends.names.ipip == "tun-x"
    assert s.http.metrics_addr == "127.0.0.1:0" and s.agent.status_socket.parent == s.agent.run_dir


@pytest.mark.parametrize("flag", ["--interface", "--vxlan-interface", "--ipip-interface"])
@pytest.mark.parametrize("name", ["a/b", "has space", "x" * 16, ""])
def test_every_link_name_is_validated(flag: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--node-name", "n1", flag, name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"meshd: error: {flag} ") and "a link name has 1 to 15 characters" in err


@pytest.mark.parametrize("interface", ["wg0", "x" * 15])
def test_the_rotation_helper_link_is_named_from_the_interface_and_is_ours(interface: str) -> None:
    names = settings_from(parse("--node-name", "n1", "--interface", interface)).backends.names
    helper = names.rotation_helper
    assert helper == f"{interface[:13]}-r" and len(helper) <= 15
    assert names.owned() == {interface, names.vxlan, names.ipip, helper}
