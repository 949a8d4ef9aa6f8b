"""`meshd status`: the /status document and its table, as an operator reads them."""

from __future__ import annotations

from meshd.core.status import render_table

NOW = 1_800_000_000.0
DOC = {
    "node": "node-a",
    "publicKey": "x" * 43 + "=",
    "mode": "Required",
    "fallback": "VXLAN",
    "generation": 3,
    "interface": "meshd0",
    "listenPort": 51820,
    "peers": [
        {
            "node": "node-b",
            "transport": "wireguard",
            "endpoint": "198.18.0.2:51820",
            "allowedIPs": ["198.19.2.0/24"],
            "podCIDRs": ["198.19.2.0/24"],
            "lastHandshake": NOW - 42,
            "rxBytes": 123_456,
            "txBytes": 2048,
        },
        {
            "node": "node-c",
            "transport": "vxlan",
            "endpoint": None,
            "allowedIPs": [],
            "podCIDRs": ["198.19.3.0/24", "2001:db8:19:3::/64"],
            "lastHandshake": None,
            "rxBytes": 0,
            "txBytes": 0,
        },
        {"node": "node-d", "transport": "none", "podCIDRs": ["198.19.4.0/24"], "rxBytes": 0, "txBytes": 0},
    ],
    "problems": [
        {"kind": "required-unencrypted", "nodes": ["node-d"], "detail": "node-d cannot run WireGuard"}
    ],
}


def test_the_table_shows_each_peer_with_what_reaches_it() -> None:
    lines = render_table(DOC, now=NOW).splitlines()
    assert lines[0].split() == [
        "node", "node-a", "interface", "meshd0", "port", "51820", "mode", "Required", "fallback", "VXLAN",
    ]  # fmt: skip
    header = lines[3]
    assert header.split() == ["PEER", "TRANSPORT", "ENDPOINT", "ALLOWED", "IPS", "HANDSHAKE", "RX", "TX"]
    rows = {line.split()[0]: line for line in lines[4:7]}
    assert rows["node-b"].split()[1:] == ["wireguard", "198.18.0.2:51820", "198.19.2.0/24", "42s", "ago",
                                          "120.6", "KiB", "2.0", "KiB"]  # fmt: skip
    assert "198.19.3.0/24,2001:db8:19:3::/64" in rows["node-c"] and rows["node-c"].split()[2] == "-"
    assert "- (no route)" in rows["node-d"]
    assert lines[-1] == "! required-unencrypted: node-d cannot run WireGuard"
    column = header.index("ALLOWED IPS")
    assert all(row[column - 1] == " " for row in rows.values())  # columns line up


def test_no_peers_says_so() -> None:
    assert render_table({**DOC, "peers": [], "problems": []}, now=NOW).endswith("(no peers)")
