"""`auth-retry`: OpenVPN 2.6's none and nointeract are honoured; interact (ask the user again)
is refused with file:line without management-query-passwords (nobody else to ask)."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"      # 5 lines


@pytest.mark.parametrize("value,retries", [("none", False), ("nointeract", True)])
def test_auth_retry_values(value, retries):
    assert parse_config(BASE + f"auth-retry {value}\n", "/p/c.ovpn").auth_retry is retries
    assert parse_config(BASE, "/p/c.ovpn").auth_retry is False


@pytest.mark.parametrize("value", ["interact", "sometimes"])
def test_auth_retry_interact_and_unknown_values_are_refused_with_their_line(value):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + f"auth-retry {value}\n", "/p/c.ovpn")
    assert "/p/c.ovpn:6" in str(e.value) and "auth-retry" in str(e.value)
