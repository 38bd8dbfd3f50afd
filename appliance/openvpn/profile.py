"""Compatibility shim: Options → engine settings now lives in settings.py (one builder for both
roles); this module keeps `from appliance.openvpn.profile import ...` working for the pumps and cli."""
from __future__ import annotations

from .settings import (client_session_config, comp_framing, data_overhead, protection, server_settings,
                       session_config, tcp_mss, tls_settings, wrapper_factory)

__all__ = ["client_session_config", "comp_framing", "data_overhead", "protection", "server_settings",
           "session_config", "tcp_mss", "tls_settings", "wrapper_factory"]
