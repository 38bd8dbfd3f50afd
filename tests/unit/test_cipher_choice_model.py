"""ciphers.choose (with occ_cipher reading the options string) against a small model of OpenVPN
2.6.14's server-side choice, written from its source (ssl_ncp.c ncp_get_best_cipher,
tls_peer_ncp_list; multi.c multi_client_set_protocol_options; options.c
options_string_extract_option), over every combination of: IV_CIPHERS present / empty / absent,
IV_NCP 0 / 2, the options string's `cipher` none / in data-ciphers / not in it / empty, the
fallback set / unset, and two orders of the server's data-ciphers. Why a model and not a list of
expected results: the cases are many and the rule has three readers (the session, a ccd's check,
a reload's verdict); a model written from the C reads each case the way 2.6 does."""
from __future__ import annotations

import itertools

import pytest

from appliance.openvpn import ciphers


def _model_remote_cipher(options: str) -> str | None:
    """options_string_extract_option(options, "cipher"): the first comma-separated field that
    starts "cipher " while more than those 7 characters remain in the whole string; its value up
    to the next comma (so "cipher ," mid-string is the empty string, not absent). `[null-cipher]`
    becomes "none" (ssl.c key_method_2_read)."""
    p: int | None = 0
    while p is not None:
        rest = options[p:]
        if rest.startswith("cipher") and len(rest) > 7 and rest[6] == " ":
            value = rest[7:].split(",", 1)[0]
            return "none" if value == "[null-cipher]" else value
        comma = options.find(",", p)
        p = comma + 1 if comma >= 0 else None
    return None


def _model_peer_list(peer_info: dict[str, str]) -> str:
    """tls_peer_ncp_list: IV_CIPHERS's value when sent (even empty), else the AES-GCM pair for
    IV_NCP >= 2, else the empty list."""
    if "IV_CIPHERS" in peer_info:
        return peer_info["IV_CIPHERS"]
    if int(peer_info.get("IV_NCP", "0") or 0) >= 2:
        return "AES-256-GCM:AES-128-GCM"
    return ""


def _model(peer_info: dict[str, str], server_list: list[str], fallback: str | None,
           remote: str | None) -> str | None:
    """2.6.14's pushed cipher, or None for AUTH_FAILED 'no shared cipher'."""
    peer_list = _model_peer_list(peer_info)
    remote_cipher = "" if remote is None or "IV_CIPHERS" in peer_info else remote
    for token in server_list:            # ncp_get_best_cipher: the server's order decides
        if token in [t for t in peer_list.split(":") if t] or token == remote_cipher:
            return token
    # multi_client_set_protocol_options: why it failed, and the fallback only for a client that
    # said nothing at all -- no list, and no options-string cipher (NULL, not merely empty).
    if peer_list:
        return None
    if remote is not None:
        return None
    return fallback


_IV_CIPHERS = {"absent": None, "empty": "", "cbc+chacha": "AES-256-CBC:CHACHA20-POLY1305",
               "gcm128": "AES-128-GCM"}
_OCC = {"none": "V4,dev-type tun,link-mtu 1559,proto UDPv4,auth SHA1,keysize 256,key-method 2,tls-client",
        "in-list": "V4,dev-type tun,cipher AES-256-CBC,auth SHA1,key-method 2,tls-client",
        "not-in-list": "V4,dev-type tun,cipher BF-CBC,auth SHA1,key-method 2,tls-client",
        "empty-mid": "V4,dev-type tun,cipher ,auth SHA1,key-method 2,tls-client",
        "empty-at-end": "V4,dev-type tun,auth SHA1,key-method 2,tls-client,cipher ",
        "null": "V4,dev-type tun,cipher [null-cipher],auth SHA1,key-method 2,tls-client"}
_SERVER = {"gcm-first": ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305", "AES-256-CBC"],
           "cbc-first": ["AES-256-CBC", "CHACHA20-POLY1305", "AES-128-GCM", "AES-256-GCM"]}
_FALLBACK = {"unset": None, "AES-128-CBC": "AES-128-CBC"}

_CASES = list(itertools.product(_IV_CIPHERS, ("0", "2"), _OCC, _FALLBACK, _SERVER))


@pytest.mark.parametrize("ivc,ncp,occ,fb,server", _CASES)
def test_choose_picks_what_2_6_14_picks(ivc, ncp, occ, fb, server):
    peer_info = {"IV_VER": "2.6.14", "IV_NCP": ncp}
    if _IV_CIPHERS[ivc] is not None:
        peer_info["IV_CIPHERS"] = _IV_CIPHERS[ivc]
    options = _OCC[occ]
    want = _model(peer_info, _SERVER[server], _FALLBACK[fb], _model_remote_cipher(options))
    got = ciphers.choose(peer_info, _SERVER[server], _FALLBACK[fb], ciphers.occ_cipher(options))
    assert got == want


def test_the_table_reaches_every_outcome():
    """The grid is not vacuous: it holds a list match, an OCC match, a fallback and a refusal."""
    outcomes = set()
    for ivc, ncp, occ, fb, server in _CASES:
        peer_info = {"IV_NCP": ncp}
        if _IV_CIPHERS[ivc] is not None:
            peer_info["IV_CIPHERS"] = _IV_CIPHERS[ivc]
        outcomes.add(_model(peer_info, _SERVER[server], _FALLBACK[fb],
                            _model_remote_cipher(_OCC[occ])))
    assert {None, "AES-128-CBC", "AES-256-CBC", "AES-256-GCM", "CHACHA20-POLY1305",
            "AES-128-GCM"} <= outcomes


def test_client_choice_follows_the_same_rule_with_a_ccd_list():
    """A ccd `data-ciphers` line replaces the server's list before the same choice (multi.c)."""
    class Ccd:
        data_ciphers = ["AES-256-CBC"]
        fallback = None
    occ = ciphers.occ_cipher(_OCC["empty-mid"])
    assert ciphers.client_choice({}, ["AES-256-GCM"], "AES-128-CBC", Ccd(), occ) is None
    assert ciphers.client_choice({}, ["AES-256-GCM"], "AES-128-CBC", Ccd(), None) == "AES-128-CBC"
    assert ciphers.client_choice({}, ["AES-256-GCM"], None, Ccd(),
                                 ciphers.occ_cipher(_OCC["in-list"])) == "AES-256-CBC"
