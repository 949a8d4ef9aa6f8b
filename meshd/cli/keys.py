"""`meshd keys init|pubkey --key-file PATH`: create the node's key (once) and print its public key."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keys.store import load, load_or_create
from meshd.agent.settings import AgentSettings
from meshd.cli.flags import add_run_dir_flag, env
from meshd.cli.status import call_agent
from meshd.core.rotation import REQUEST_TIMEOUT
from meshd.errors import ConfigError

DEFAULT_KEY_FILE = str(AgentSettings(node_name="").key_file)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("keys", help="create the node's WireGuard key, print its public key")
    p.set_defaults(func=lambda _args: _usage(p))
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    init = sub.add_parser("init", help="create the key file if missing (mode 0600), print the public key")
    pubkey = sub.add_parser("pubkey", help="print the public key of an existing key file")
    for parser, handler in ((init, handle_init), (pubkey, handle_pubkey)):
        parser.add_argument(
            "--key-file",
            default=env("KEY_FILE", DEFAULT_KEY_FILE),
            help=f"the private key file (default {DEFAULT_KEY_FILE}) [MESHD_KEY_FILE]",
        )
        parser.set_defaults(func=handler)
    rotate = sub.add_parser(
        "rotate",
        help="ask the local agent to rotate the node's key now (make-before-break); print the new public key",
    )
    add_run_dir_flag(rotate)
    rotate.set_defaults(func=handle_rotate)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _key_file(args: argparse.Namespace) -> Path:
    if not args.key_file:
        raise ConfigError("--key-file (or MESHD_KEY_FILE) must not be empty")
    return Path(args.key_file)


def handle_init(args: argparse.Namespace) -> int:
    key, _created = load_or_create(_key_file(args))
    print(key.public_key().base64)
    return 0


def handle_pubkey(args: argparse.Namespace) -> int:
    print(load(_key_file(args)).public_key().base64)
    return 0


def handle_rotate(args: argparse.Namespace) -> int:
    """POST /rotate on the agent's socket: it answers once the rotation is done."""
    doc = json.loads(call_agent(Path(args.run_dir), "POST", "/rotate", timeout=REQUEST_TIMEOUT + 10))
    print(doc["publicKey"])
    return 0
