"""Where a server VM's management interface (`management IP PORT PWFILE`) may listen: on an
address of its WAN or its LAN that the TOML fixes, so the firewall can open the port on that one
interface and nowhere else (router/killswitch.py, chain `input`).

Why only a known address: Linux answers for any of its addresses on any interface (the weak host
model), so a port bound to the LAN address is reachable from the WAN by anyone who routes that
address to the VM's WAN; the input rule closes it, and it needs the interface. `0.0.0.0`/`::`
would listen on the WAN, the LAN and the tunnel at once, and a DHCP or SLAAC address (or the LAN's
derived ULA) is not known before boot: those are refused when the TOML is loaded, with the
profile's line, rather than leaving the bind to fail (or the port open everywhere) in the VM.
A loopback address is fine and needs nothing: nothing outside the VM reaches it.
"""
from __future__ import annotations

import ipaddress


def management_side(wan: object, lan: object | None, management: tuple | None) -> str | None:
    """"wan" or "lan": the interface holding the address `management` listens on; None for no TCP
    listener, or one on loopback. ValueError (the reason, for the profile's line) otherwise."""
    if not management or management[1] == "unix":
        return None
    ip = ipaddress.ip_address(management[0])
    if ip.is_loopback:
        return None
    if ip.is_unspecified:
        raise ValueError(f"{ip} would listen on the WAN, the LAN and the tunnel at once: in the appliance, "
                         "give the address of the one interface it is for ([lan] address or a static [wan] address)")
    for side, section in (("wan", wan), ("lan", lan)):
        if section is None:
            continue
        for key in ("address", "address6"):
            iface = getattr(section, key, None)
            if iface is not None and iface.ip == ip:
                return side
    known = [f"[{n}] {k} {getattr(s, k).ip}" for n, s in (("wan", wan), ("lan", lan)) if s is not None
             for k in ("address", "address6") if getattr(s, k, None) is not None]
    raise ValueError(f"{ip} is no address of this appliance ({', '.join(known) or 'no static address'}): "
                     "the interface must hold it; a DHCP or SLAAC address (or the LAN's derived IPv6) is "
                     "not known before boot, so give a static one")
