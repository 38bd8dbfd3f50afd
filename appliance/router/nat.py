"""Masquerading as nftables text, and the one place that hands rulesets to `nft`.

Why text: a ruleset rendered by a pure function can be read, diffed and unit-tested, and `nft -f -`
applies it atomically (all or nothing). Rules name interfaces with `iifname`/`oifname` strings,
which nft accepts for interfaces that do not exist yet, so everything is in place before the TUN
device is created.
"""
from __future__ import annotations

import subprocess

NAT_TABLE = "vpnappliance_nat"
NAT6_TABLE = "vpnappliance_nat6"
NFT_TIMEOUT = 10.0


def nft_string(name: str) -> str:
    """An interface name as an nft string literal (names are validated, quotes are not allowed)."""
    if not name or '"' in name or "\n" in name:
        raise ValueError(f"bad interface name {name!r}")
    return f'"{name}"'


def replace_table(family: str, name: str, body: str) -> str:
    """Text that atomically replaces a table: create-if-missing, delete, define anew."""
    return f"table {family} {name}\ndelete table {family} {name}\ntable {family} {name} {{\n{body}}}\n"


def delete_table(family: str, name: str) -> str:
    """Text that removes a table whether or not it exists (nft 1.0.6 has no `destroy`)."""
    return f"table {family} {name}\ndelete table {family} {name}\n"


def render_nat(tun: str, lan: str, role: str = "client") -> str:
    """Source NAT for router mode, IPv4 (`ip` table) and IPv6 (`ip6` table: NAT66).

    client: LAN hosts leave through the tunnel with the tunnel address, so the server needs no
    route (iroute) for the LAN. server: VPN clients reach the LAN with the appliance's LAN address,
    so LAN hosts need no route back to the VPN pool. IPv6 the same way: an OpenVPN server gives a
    client ONE IPv6 address (`ifconfig-ipv6`), so the LAN's ULA prefix is masqueraded behind it
    (see lan/ra.py for why NAT66 is the default and routing the choice of `nat = false`).
    """
    if role == "client":
        rule = f"iifname {nft_string(lan)} oifname {nft_string(tun)} masquerade"
    elif role == "server":
        rule = f"iifname {nft_string(tun)} oifname {nft_string(lan)} masquerade"
    else:
        raise ValueError(f"role must be client or server, not {role!r}")
    body = ("\tchain postrouting {\n"
            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            f"\t\t{rule}\n"
            "\t}\n")
    return replace_table("ip", NAT_TABLE, body) + replace_table("ip6", NAT6_TABLE, body)


def apply_ruleset(text: str, netns: str | None = None) -> None:
    """Run `nft -f -` once with `text` (inside `ip netns exec NETNS` when given).

    Raises RuntimeError with nft's own message when it refuses the ruleset or is missing."""
    argv = ["nft", "-f", "-"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        r = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=NFT_TIMEOUT)
    except FileNotFoundError:
        raise RuntimeError("`nft` not found: install the nftables package") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`nft -f -` did not finish within {NFT_TIMEOUT:.0f} s") from None
    if r.returncode != 0:
        raise RuntimeError(f"nft refused the ruleset: {r.stderr.strip()}")


def delete_nat() -> str:
    """Text that removes both NAT tables (IPv4 and IPv6)."""
    return delete_table("ip", NAT_TABLE) + delete_table("ip6", NAT6_TABLE)


def flush(netns: str | None = None) -> None:
    """Remove our NAT tables (nothing else)."""
    apply_ruleset(delete_nat(), netns)
