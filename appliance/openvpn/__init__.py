"""Sans-I/O OpenVPN protocol engine: bytes and `now` in; wire bytes, tunnel packets, events out.

Import rule (checkable with grep): nothing in this package imports socket, select, time, os,
asyncio, or any of appliance.transport / tun / router / gateway.
"""
from .errors import BadPacket, ConfigError, LocalProtocolError, RemoteProtocolError
from .session import Role, Session, SessionConfig

__all__ = ["BadPacket", "ConfigError", "LocalProtocolError", "RemoteProtocolError", "Role", "Session",
           "SessionConfig"]
