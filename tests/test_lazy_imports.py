"""What an agent start loads: each cold `meshd` process pays for every module it imports (a 4th node joining
waits for its agent's imports), so a run loads only what its datastore and endpoints use. Checked in a fresh
interpreter doing what `meshd run` does before it touches the kernel: parse the flags, wire the agent's
modules, make the datastore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from meshd.cli.main import build_parser
from meshd.cli.flags import settings_from
args = build_parser().parse_args(sys.argv[1:])
if args.func is not None:
    import meshd.agent.wiring as wiring
    wiring.make_datastore(settings_from(args), wiring.Moves(), register=False)
print(",".join(sorted({m.split(".")[0] for m in sys.modules})))
"""
FILE_RUN = ["run", "--node-name", "n1", "--underlay-ip", "198.18.0.1", "--pod-cidr", "198.19.1.0/24"]


def loaded(*argv: str) -> set[str]:
    """The top-level packages a fresh `meshd ARGV` has imported by then."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(out.stdout.strip().split(","))


def test_a_file_datastore_agent_loads_no_web_framework_kubernetes_client_or_yaml(tmp_path: Path) -> None:
    """Its endpoints' aiohttp comes only once the first pass published (meshd.agent.endpoints, imported at
    the time); YAML is read only where a MeshConfig file exists."""
    got = loaded(*FILE_RUN, "--datastore", f"file:{tmp_path}")
    assert {"meshd", "pyroute2", "prometheus_client"} <= got  # the probe did wire the agent
    assert not got & {"aiohttp", "kubernetes", "yaml", "pydantic", "yarl", "multidict"}


def test_the_kubernetes_datastore_loads_its_client(tmp_path: Path) -> None:
    """The check above sees a client when one is loaded (the same probe, the other datastore)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    got = loaded("run", "--node-name", "n1", "--kubeconfig", str(kubeconfig))
    assert {"aiohttp", "kubernetes"} <= got


HELP = """
import sys
from meshd.cli.main import main
main(sys.argv[1:])
print(",".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["status", "--help"]])
def test_help_loads_no_netlink_or_http_library(argv: list[str]) -> None:
    """The flags come from settings that name the backends without importing them."""
    proc = subprocess.run(
        [sys.executable, "-c", HELP, *argv], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    *help_text, last = proc.stdout.strip().splitlines()
    got = set(last.split(","))
    assert "usage: meshd" in "\n".join(help_text) and "meshd" in got
    assert not got & {"pyroute2", "aiohttp", "kubernetes", "yaml"}
