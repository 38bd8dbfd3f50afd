"""Client and server gateways on in-memory ports: the real pump code, no root, no kernel (the
World itself is lab/gateway_world.py, shared with the lab's in-memory tools)."""
from __future__ import annotations

import pytest

from lab.gateway_world import (CLIENT_IP, SERVER_IP, STATIC_KEY, WALL0, World, _blocks, _kpem,  # noqa: F401 - the tests' imports
                               _pem, client_conf, ipv4_udp, make_pki, server_conf)


@pytest.fixture(scope="session")
def pki() -> dict:
    return make_pki([f"client{i}" for i in range(4)])


@pytest.fixture
def world() -> World:
    return World()
