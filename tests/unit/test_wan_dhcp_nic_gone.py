"""fuzz37 (wan-dhcp-stop): the WAN NIC gone under the DHCP client (a USB adapter pulled, a VM's
NIC hot-unplugged). `_apply` looked the interface up with `link_lookup(...)[0]`, so a renewal's
bind failed with IndexError and the log said "DHCP renewal failed: list index out of range".
Now it is an OSError naming the interface (ENODEV), which the renewal thread logs and retries
after retry_min as before; `_remove` (the lease running out, stop()) does nothing then."""
from __future__ import annotations

import errno

import pytest

from appliance.boot import dhcp_client as dc


class _NoNic:
    def __enter__(self):
        return self

    def __exit__(self, *_a) -> None:
        pass

    def link_lookup(self, ifname: str) -> list[int]:
        return []


def _offer() -> dc.Offer:
    return dc.Offer("198.18.36.100", 24, "198.18.36.1", [], "198.18.36.1", 600, None, None)


def test_apply_on_a_nic_that_is_gone_names_it(monkeypatch):
    monkeypatch.setattr(dc, "IPRoute", _NoNic)
    with pytest.raises(OSError) as e:
        dc._apply("wan0", _offer())
    assert e.value.errno == errno.ENODEV and "wan0" in str(e.value)


def test_remove_and_stop_on_a_nic_that_is_gone_do_nothing(monkeypatch):
    monkeypatch.setattr(dc, "IPRoute", _NoNic)
    dc._remove("wan0", "198.18.36.100", 24)
    lease = dc.Lease("wan0", "198.18.36.100", 24, "198.18.36.1", [], "198.18.36.1", 600)
    lease.stop()
    assert lease._stop.is_set()
