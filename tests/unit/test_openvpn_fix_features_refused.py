"""The features behind some of OpenVPN's 2023-2026 security fixes do not exist here, and a config
that asks for one fails at its line rather than running without it: tls-crypt-v2-max-age
(bc5ec987, CVE-2026-12932; tls-crypt-v2-verify is run since 2026-12-03:
tests/gateway/test_tls_verify.py), management-signal and
management-forget-disconnect (4bf05d48). capath is served since 2026-12-04 with its CRLs kept
apart from crl-verify's, as after 2befad4d's CRL mixups fix (tls.py _add_capath). auth-gen-token's
external-auth (423afa8e, CVE-2026-13122: the session of an invalid token kept for the external
verdict) and management-client-auth are served since 2026-12-03 (with the fix:
tests/gateway/test_auth_script.py), and refused here only without what they need (a command or
the management client; `management`).
Each decides who may connect or what an operator's action does: never accepted and ignored."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.config.ccd import parse_ccd
from appliance.openvpn.errors import ConfigError
from tests.gateway.conftest import pki, server_conf  # noqa: F401 - pki: the fixture


@pytest.mark.parametrize("line", ["auth-gen-token 0 external-auth",
                                  "tls-crypt-v2-max-age 30", "management-signal", "management-forget-disconnect",
                                  "management-client-auth"])
def test_a_server_config_asking_for_it_fails_at_its_line(pki, line):
    text = server_conf(pki, extra=f"script-security 2\n{line}\n")
    at = next(i for i, t in enumerate(text.splitlines(), 1) if t == line)
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/mem/server.conf")
    assert f"/mem/server.conf:{at}: {line.split()[0]}: " in str(e.value), str(e.value)


@pytest.mark.parametrize("push", ["route\t198.18.5.0 255.255.255.0", "dhcp-option DOMAIN a\x1bb", "echo x\x7f"])
def test_a_push_every_client_would_refuse_fails_at_its_line(pki, push):
    """414f428f (CVE-2024-5594): OpenVPN 2.6.14's client (and ours) refuse a control message with
    a byte below 0x20 or DEL whole, so a server `push` (or a ccd file's) holding one leaves every
    client without its push; OpenVPN's server sends it all the same. Here it fails at its line."""
    text = server_conf(pki, extra=f'push "{push}"\n')
    at = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("push "))
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/mem/server.conf")
    assert f"/mem/server.conf:{at}: push: holds a control character" in str(e.value), str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_ccd(f'iroute 198.18.9.0 255.255.255.0\npush "{push}"\n', "/ccd/alice")
    assert "/ccd/alice:2: push: holds a control character" in str(e.value), str(e.value)
    parse_ccd('push "route 198.18.5.0 255.255.255.0"\n', "/ccd/alice")       # the check can pass
