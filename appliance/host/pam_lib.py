"""The few libpam calls the auth-pam plugin makes, through ctypes: pam_start, pam_set_item
(PAM_RHOST), pam_authenticate, pam_acct_mgmt, pam_end, pam_strerror.

Why our own binding and not python-pam (PyPI): python-pam's conversation is fixed (a hidden
prompt gets the password, a visible one the username) and it always starts PAM with the
username, while OpenVPN's plugin answers by name/value pairs matched against the prompt text
(pam_rules.answer) and then starts PAM without a user. A conversation function of our own is
all that differs, and with it the binding is these six calls.

Run only in the root helper's per-check child (pam_helper.py): a PAM module may block, sleep
(pam_unix's failure delay) or crash, and that ends the child, never the server.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable

from .pam_rules import ConvError, Creds, answer

PAM_SUCCESS = 0
PAM_BUF_ERR = 5
PAM_CONV_ERR = 19
PAM_RHOST = 4
PAM_MAX_NUM_MSG = 32


class _Message(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class _Response(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


_CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.POINTER(_Message)),
                         ctypes.POINTER(ctypes.POINTER(_Response)), ctypes.c_void_p)


class _Conv(ctypes.Structure):
    _fields_ = [("conv", _CONV), ("appdata_ptr", ctypes.c_void_p)]


def _load() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    pam = ctypes.CDLL(ctypes.util.find_library("pam") or "libpam.so.0")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    pam.pam_start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_Conv), ctypes.POINTER(ctypes.c_void_p)]
    pam.pam_set_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    pam.pam_authenticate.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pam.pam_acct_mgmt.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pam.pam_end.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pam.pam_strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pam.pam_strerror.restype = ctypes.c_char_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.calloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    return pam, libc


_libs: tuple[ctypes.CDLL, ctypes.CDLL] | None = None


def load() -> None:
    """Load libpam (the helper does at start, so a host without it fails the server's start)."""
    global _libs
    if _libs is None:
        _libs = _load()


def _c_string(libc: ctypes.CDLL, b: bytes) -> int | None:
    """A malloc'ed copy of `b` with its NUL (PAM frees the answers)."""
    p = libc.malloc(len(b) + 1)
    if p:
        ctypes.memmove(p, b + b"\0", len(b) + 1)
    return p


def authenticate(service: bytes, pairs: tuple[tuple[bytes, bytes], ...], c: Creds,
                 log: Callable[[str], None] = lambda s: None) -> tuple[bool, str]:
    """The plugin's pam_auth: (accepted, PAM's word for a refusal)."""
    load()
    assert _libs is not None
    pam, libc = _libs

    def conv(n, msgs, resps, _data) -> int:
        resps[0] = ctypes.cast(None, ctypes.POINTER(_Response))
        if n <= 0 or n > PAM_MAX_NUM_MSG:
            return PAM_CONV_ERR
        arr = libc.calloc(n, ctypes.sizeof(_Response))
        if not arr:
            return PAM_BUF_ERR
        out = ctypes.cast(arr, ctypes.POINTER(_Response))
        ok = True
        for i in range(n):
            m = msgs[i].contents
            try:
                text = answer(pairs, m.msg_style, m.msg, c)
            except ConvError as e:
                log(f"PAM conversation failed: {e}")
                ok = False
                continue
            except Exception:  # noqa: BLE001 - nothing may unwind through libpam's C frames
                ok = False
                continue
            if text is not None:
                out[i].resp = _c_string(libc, text)
                if not out[i].resp:
                    ok = False
        if not ok:
            for i in range(n):
                if out[i].resp:
                    libc.free(out[i].resp)
            libc.free(arr)
            return PAM_CONV_ERR
        resps[0] = out
        return PAM_SUCCESS

    callback = _CONV(conv)
    conv_struct = _Conv(callback, None)
    handle = ctypes.c_void_p()
    status = pam.pam_start(service, None if pairs else c.username, ctypes.byref(conv_struct), ctypes.byref(handle))
    if status != PAM_SUCCESS:
        return False, f"pam_start failed ({status})"
    if c.remote:
        status = pam.pam_set_item(handle, PAM_RHOST, ctypes.c_char_p(c.remote))
    if status == PAM_SUCCESS:
        status = pam.pam_authenticate(handle, 0)
    if status == PAM_SUCCESS:
        status = pam.pam_acct_mgmt(handle, 0)
    why = "" if status == PAM_SUCCESS else (pam.pam_strerror(handle, status) or b"?").decode("utf-8", "replace")
    pam.pam_end(handle, status)
    return status == PAM_SUCCESS, why
