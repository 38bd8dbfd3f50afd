"""A `<connection>` block whose `remote` has no host: refused at its line as a config error, not a
traceback. Found by the fuzz target `connection-block` (tests/fuzz/crashers/connection-block/
b9daad6a31-*: IndexError in connection_entry.read_block, which read the bare line's first word)."""
from __future__ import annotations

import pytest

from appliance.openvpn import config as options
from appliance.openvpn.errors import ConfigError


@pytest.mark.parametrize("body, line", [("remote\n", 4), ("remote\nremote 198.18.0.1\n", 4),
                                        ("remote 198.18.0.1\nremote\n", 5)])
def test_a_bare_remote_in_a_block_is_a_config_error_at_its_line(body, line):
    text = "client\ndev tun\n<connection>\n" + body + "</connection>\n"
    with pytest.raises(ConfigError) as e:
        options.parse_config(text, "/fuzz/conn.ovpn")
    errors = getattr(e.value, "errors", None) or [e.value]
    assert any(x.line == line and x.directive == "remote" for x in errors), [str(x) for x in errors]
