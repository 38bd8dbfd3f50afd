"""Options' written __init__ (config/model.py; helper startup49) gives what the dataclass's
generated one gave: every field its declared default, a fresh list/dict per instance, keywords
(dataclasses.replace's way in) taken, an unknown one refused."""
import dataclasses

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.config.model import Options


def test_every_field_gets_its_declared_default_and_fresh_containers():
    a, b = Options(), Options()
    for f in dataclasses.fields(Options):
        want = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        assert getattr(a, f.name) == want, f.name
        if isinstance(want, (list, dict, set)):
            assert getattr(a, f.name) is not getattr(b, f.name), f.name     # not shared between configs
    assert a == b and "Options(path='<string>'" in repr(a)


def test_keywords_replace_and_unknown_names():
    o = Options(path="/etc/x.conf", role="server", push=["route 198.18.1.0 255.255.255.0"])
    assert (o.path, o.role, o.push) == ("/etc/x.conf", "server", ["route 198.18.1.0 255.255.255.0"])
    c = parse_config("client\ndev tun\nremote 198.18.0.1 1194 udp\npeer-fingerprint " + ":".join(["AB"] * 32) + "\n",
                     "/mem/c.ovpn")
    r = dataclasses.replace(c, tun_mtu=1400)
    assert r.tun_mtu == 1400 and r.remotes == c.remotes and r != c and dataclasses.replace(r, tun_mtu=c.tun_mtu) == c
    with pytest.raises(TypeError):
        Options(no_such_option=1)
    with pytest.raises(TypeError):
        dataclasses.replace(c, no_such_option=1)
