"""What a client's peer-info decides, read as OpenVPN 2.6.14 reads it (compat48): IV_PROTO, IV_NCP
and IV_CIPHERS are found with strstr anywhere in the text (ssl_util.c extract_var_peer_info,
extract_iv_proto; ssl_ncp.c tls_peer_info_ncp_ver), their values kept as sent, and cipher names
compared with strcmp, case included (ssl_ncp.c tls_item_in_cipher_list, ncp_get_best_cipher).
Before, ours read KEY=value lines (keys and values stripped) and compared names without case:
each case marked `was:` below got another verdict.

A model of those C functions, written from the source in the C's own steps (a byte-wise strstr, a
strtol-like scan), is checked against the engine's readers over a seeded sweep of texts built
from the pieces that steer them."""
from __future__ import annotations

import random

import pytest

from appliance.openvpn import ciphers
from appliance.openvpn.config.ccd import parse_ccd
from appliance.openvpn.keymethod import KeyMethod2, iv_proto, peer_info_int, peer_info_var
from appliance.openvpn.p2p import p2p_cipher

SERVER = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]


def _info(text: str):
    """The session's peer-info as the server keeps it from a key-method message."""
    return KeyMethod2(b"", b"", "", peer_info=text).peer_info_dict()


# ---- the model, from 2.6.14's C

def _c_strstr(hay: str, needle: str) -> int:
    for i in range(len(hay) - len(needle) + 1):
        if all(hay[i + j] == needle[j] for j in range(len(needle))):
            return i
    return -1


def _c_extract_var(text: str, var: str) -> str | None:
    """extract_var_peer_info(text, "VAR="): from after the first VAR= to the next newline."""
    at = _c_strstr(text, var)
    if at < 0:
        return None
    out = ""
    for ch in text[at + len(var):]:
        if ch == "\n":
            break
        out += ch
    return out


def _c_scan_int(text: str) -> int | None:
    """sscanf(..., "%d"): isspace skipped, a sign, decimal digits; None when no digit (r != 1);
    glibc reads a long (clamped) and stores its low 32 bits."""
    i = 0
    while i < len(text) and text[i] in " \t\n\v\f\r":
        i += 1
    neg = False
    if i < len(text) and text[i] in "+-":
        neg = text[i] == "-"
        i += 1
    digits = ""
    while i < len(text) and "0" <= text[i] <= "9":
        digits += text[i]
        i += 1
    if not digits:
        return None
    v = int(digits)
    v = -v if neg else v
    v = max(-(2**63), min(2**63 - 1, v)) & 0xFFFFFFFF
    return v - 2**32 if v >= 2**31 else v


def _c_iv_proto(text: str) -> int:
    at = _c_strstr(text, "IV_PROTO=")
    v = _c_scan_int(text[at + len("IV_PROTO="):]) if at >= 0 else None
    return v if v is not None and v > 0 else 0


def _c_ncp_ver(text: str) -> int:
    at = _c_strstr(text, "IV_NCP=")
    v = _c_scan_int(text[at + len("IV_NCP="):]) if at >= 0 else None
    return v or 0


def _c_peer_list(text: str) -> str:
    v = _c_extract_var(text, "IV_CIPHERS=")
    if v is not None:
        return v
    return "AES-256-GCM:AES-128-GCM" if _c_ncp_ver(text) >= 2 else ""


def _c_choice(text: str, server: list[str], fallback: str | None) -> str | None:
    """ncp_get_best_cipher + multi_client_set_protocol_options, no options-string cipher."""
    peer = _c_peer_list(text)
    for token in server:
        if token in [t for t in peer.split(":") if t]:      # strtok skips empty names
            return token
    return None if peer else fallback


_PIECES = ["IV_CIPHERS=", "IV_NCP=", "IV_PROTO=", "IV_VER=2.6.14", "IV_GUI_VER=x", "UV_A=", "X", " ", "\n",
           "\r", "=", ":", "AES-128-GCM", "aes-256-gcm", "AES-256-GCM", "CHACHA20-POLY1305", "2", "6", "-1",
           "+3", "0", "4294967298", "99999999999999999999", "\u0663"]


def _texts(n: int, seed: int = 48) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(_PIECES) for _ in range(rnd.randint(1, 9))) for _ in range(n)]


def test_the_readers_match_the_model_over_a_sweep_of_texts():
    texts = _texts(6000) + ["", "IV_CIPHERS=", "IV_NCP=2", "IV_PROTO=2\n"]
    for text in texts:
        info = _info(text)
        assert peer_info_var(info, "IV_CIPHERS") == _c_extract_var(text, "IV_CIPHERS="), repr(text)
        assert iv_proto(info) == _c_iv_proto(text), repr(text)
        assert (peer_info_int(info, "IV_NCP") >= 2) == (_c_ncp_ver(text) >= 2), repr(text)
        assert ciphers.peer_list(info) == _c_peer_list(text), repr(text)
        for fb in (None, "AES-256-CBC"):
            assert ciphers.choose(info, SERVER, fb) == _c_choice(text, SERVER, fb), repr(text)


@pytest.mark.parametrize("text,want", [
    ("IV_VER=2.6.14\nIV_CIPHERS=aes-256-gcm\n", None),                # was: AES-256-GCM (case ignored)
    ("IV_VER=2.6.14\nIV_CIPHERS=Chacha20-Poly1305:AES-128-GCM\n", "AES-128-GCM"),   # was: CHACHA20...
    ("IV_CIPHERS= AES-256-GCM\n", None),                              # was: AES-256-GCM (value stripped)
    ("IV_CIPHERS =AES-256-GCM\nIV_NCP=2\n", "AES-256-GCM"),           # the pair from IV_NCP; was the same
    ("IV_CIPHERS =CHACHA20-POLY1305\nIV_NCP=2\n", "AES-256-GCM"),     # was: CHACHA20-POLY1305 (key stripped)
    ("IV_GUI_VER=aIV_CIPHERS=AES-128-GCM\nIV_CIPHERS=AES-256-GCM\n", "AES-128-GCM"),  # the first, mid-line
    ("XIV_NCP=2\n", "AES-256-GCM"),                                   # was: the fallback (no IV_NCP key)
    ("IV_NCP=\n2\n", "AES-256-GCM"),                                  # sscanf skips the newline; was: fallback
    ("IV_CIPHERS=::\n", None),                                        # a list for 2.6; was: the fallback
    ("IV_CIPHERS=\n", "AES-128-CBC"),                                 # empty: the fallback, as before
])
def test_a_verdict_2_6_14_gives_differently_from_the_lines(text, want):
    assert ciphers.choose(_info(text), SERVER, "AES-128-CBC") == want


@pytest.mark.parametrize("text,want", [
    ("IV_PROTO =990\n", 0),                      # no `IV_PROTO=` for strstr; was 990 (key stripped)
    ("UV_X=1IV_PROTO=6\n", 6),                   # found mid-line; was 0
    ("IV_PROTO=\n6\n", 6),                       # sscanf skips the newline; was 0
    ("IV_PROTO=-1\nIV_PROTO=6\n", 0),            # the first only, and not above 0
    ("IV_PROTO=\u0663\n", 0),                     # an Arabic-Indic 3: no digit for C; was 3 (catoi's \\d)
    ("IV_PROTO=6\0IV_PROTO=2\n", 6),              # a C string ends at its NUL
])
def test_iv_proto_is_found_where_2_6_14_finds_it(text, want):
    assert iv_proto(_info(text)) == want


def test_the_refusal_logs_the_clients_list_as_it_sent_it():
    """2.6.14 logs tls_peer_ncp_list's string: case, empty names and all."""
    info = _info("IV_CIPHERS=aes-256-gcm::Chacha20-Poly1305\n")
    assert ciphers.choose(info, SERVER, None) is None
    assert ciphers.no_common(info, SERVER).endswith("client supported ciphers 'aes-256-gcm::Chacha20-Poly1305'")


def test_a_per_client_list_is_taken_as_written():
    """A ccd's `data-ciphers` is not put through the server's canonical names in 2.6 (only its own
    config's list is): `aes-256-gcm` there matches no 2.6 client's AES-256-GCM, and the client is
    refused; ours upper-cased it and let the client in."""
    ccd = parse_ccd("data-ciphers aes-256-gcm:CHACHA20-POLY1305\n", "/ccd/c1")
    assert ccd.data_ciphers == ("aes-256-gcm", "CHACHA20-POLY1305")
    info = _info("IV_CIPHERS=AES-256-GCM:AES-128-GCM\n")
    assert ciphers.client_choice(info, SERVER, None, ccd) is None
    assert ciphers.client_choice(_info("IV_CIPHERS=CHACHA20-POLY1305\n"), SERVER, None, ccd) == "CHACHA20-POLY1305"
    assert parse_ccd("cipher aes-128-cbc\n", "/ccd/c1").fallback == ("aes-128-cbc", False)


def test_p2p_compares_names_exactly():
    """get_p2p_ncp_cipher: strcmp too."""
    assert p2p_cipher(["aes-256-gcm"], ["AES-256-GCM"]) is None
    assert p2p_cipher(["AES-256-GCM", "AES-128-GCM"], ["aes-256-gcm", "AES-128-GCM"]) == "AES-128-GCM"
    assert p2p_cipher(["", "AES-128-GCM"], ["", "AES-128-GCM"]) == "AES-128-GCM"
