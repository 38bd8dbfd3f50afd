"""What a client was given at its connect from the server's config, kept on its record, so a reload
can tell whether the config it brings would now give that client something else.

Why: OpenVPN 2.6's SIGHUP restarts the whole server, so every client connects again and gets its
client-config-dir file, client-connect script and push lines as they are now. Ours keeps clients
across a reload (gateway/ops.py); a kept client whose file or push would now differ would keep
what it was given before -- an edited `ifconfig-push` or `iroute` never applying -- so the
reload's pass restarts exactly those (ops.py `_verdicts_in`), and keeps the others untouched.

Only what the config decides goes in: the effective ccd file's parsed options (its own, else
DEFAULT; parsed, so a comment or blank line changes nothing), the server's `push` lines, the
addressing pushes (`server`'s route-gateway/topology), and the client-connect command line (a
script added, changed or taken away would give other options; the script's own output is not
re-run -- it may differ from run to run). The pools, `topology`, `server` and `route` apply only
at a restart (ops.py RESTART_ONLY): a reload never takes a kept client's pool address away.

The admission checks a client passed (reload44): the auth-user-pass-verify command or password
file, management-client-auth, tls-verify, learn-address, username-as-common-name and
auth-user-pass-optional, as the config had them at its connect (admission_of). A reload that adds or changes one of them has a check the
kept client never went through -- at 2.6's SIGHUP every client reconnects through it -- so its
reason is a `Tightened` one, which ops.py does not hold off (RELOAD_RESTART_HOLDOFF): a client the
new check may refuse must not keep its tunnel meanwhile. One taken away needs no reconnect (the
client passes a check fewer) -- except auth-user-pass-optional, whose removal is the tighter
check (atk45: a client let in without credentials kept its tunnel past it). The checks a reload's pass decides itself are elsewhere: the chain,
CRL, x509 and verify-client-cert checks (tls.py peer_rechecker), the ccd file's `disable`,
ccd-exclusive and parse errors (clientpush.py ccd_refusal), duplicate-cn and max-clients
(gateway/reload_admission.py); the README's reload section (reload44) holds the table.
"""
from __future__ import annotations

from ..frozen_record import FrozenRecord
from . import ciphers
from .tls import TLS_VERSIONS, tls_version_min


class Given(FrozenRecord):
    ccd: object                             # the effective ccd file's CcdOptions (None: no file)
    push: tuple[str, ...]                   # the server's push lines
    addressing: tuple                       # `server`'s pushes before and after the ifconfig
    connect: tuple[str, ...]                # client-connect's command line (empty: none)
    admission: tuple = ()                   # the admission checks it passed (admission_of)


class Tightened(str):
    """A reason for a reload restart that is an admission check the client never passed: told
    RESTART at once, never held off (ops.py _restart_for_reload), as the check may refuse it."""


# (directive, how a change is judged): "cmd" -- added or changed tightens, taken away does not;
# "on" -- switched on tightens; "off" -- switched off tightens (a leniency the client may have
# come in by: auth-user-pass-optional's login without credentials, atk45); "any" -- either way
# (the name the client goes by changes).
_ADMISSION = (("auth-user-pass-verify", "cmd"), ("management-client-auth", "on"), ("tls-verify", "cmd"),
              ("learn-address", "cmd"), ("username-as-common-name", "any"), ("auth-user-pass-optional", "off"))


def admission_of(o) -> tuple:
    """The admission checks the config `o` (Options) puts a connecting client through, in
    _ADMISSION's order: what a kept client's record is compared with at a reload."""
    verify = o.auth_user_pass_verify_script or o.auth_user_pass_verify
    return (verify, bool(o.management_client_auth), tuple(o.tls_verify or ()), tuple(o.learn_address or ()),
            bool(o.username_as_common_name), bool(o.auth_user_pass_optional))


def tightened(was: tuple, now: tuple, only: str | None = None, credentials: bool = False) -> Tightened | None:
    """The first admission check of `now` (the one named `only`, if given) that a client
    admitted under `was` did not pass. `credentials`: it logged in with a username, so
    auth-user-pass-optional taken away is none it came in by (review46d: atk45's verdict told
    every kept client RESTART, those that had passed the command with their password too)."""
    if not was or not now:
        return None                         # settings made by hand (the engine tests'): none recorded
    for (name, kind), a, b in zip(_ADMISSION, was, now):
        if a == b or (kind in ("cmd", "on") and not b) or (kind == "off" and (b or credentials)) \
                or (only is not None and name != only):
            continue
        if kind == "off":
            return Tightened(f"{name} taken away by the reload (it may have come in without credentials)")
        if kind == "any":
            return Tightened(f"{name} changed by the reload (the name its admission goes by)")
        return Tightened(f"{name} {'changed' if a else 'added'} by the reload (a check it never went through)")
    return None


def cipher_dropped(cipher: "str | None", cfg, peer_info: "dict[str, str] | None" = None,
                   ccd: object = None, occ: "str | None" = None) -> Tightened | None:
    """Why a kept client's data cipher is one the reloaded config (`cfg`, its SessionConfig) would
    not give it now -- neither in data-ciphers nor its data-ciphers-fallback, or, when its
    per-client lines (`ccd`, what it was given: its file's, then its client-connect output's /
    client-auth block's, a sequence in that order) name ciphers, not what they choose under the
    reload (ciphers.client_choice, as at its connect) -- else None. Why (atk45): a renegotiation
    keeps the data cipher, so a reload that takes a cipher out (retiring AES-128-CBC, a fallback
    for old clients) left the clients using it on it for good; at 2.6's SIGHUP they reconnect and
    negotiate from the new list, or are refused. A client whose ccd says `data-ciphers
    CHACHA20-POLY1305` is given that by 2.6 whatever the server's list (compat47: ours told it
    RESTART when the reload took CHACHA20 out of the server's list). A Tightened reason: told
    RESTART at once, never held off."""
    if cipher is None:
        return None
    want = ciphers.client_choice(peer_info or {}, cfg.data_ciphers, cfg.data_ciphers_fallback, ccd, occ)
    if want is not False:
        if want == cipher:
            return None
        return Tightened(f"its data cipher {cipher} is not what its client-config-dir lines choose under the "
                         f"reload's data-ciphers ({want or 'none in common'})")
    # The fallback only for a client it would still be given to (review47f: one that named its
    # ciphers, or its options string's one, gets none in 2.6.14 -- ciphers.choose).
    if cipher in cfg.data_ciphers or (cipher == cfg.data_ciphers_fallback and ciphers.choose(
            peer_info or {}, cfg.data_ciphers, cfg.data_ciphers_fallback, occ) == cipher):
        return None
    return Tightened(f"its data cipher {cipher} is not among the reload's data-ciphers (a cipher it never "
                     "negotiated under them)")


def tls_version_out(version: "str | None", tls) -> Tightened | None:
    """Why a kept client's TLS version (`TLSv1.2`, its key's) is outside the reloaded config's
    tls-version-min/-max (`tls`, its TlsSettings), else None. Why (atk45): a reload raising
    tls-version-min applied at a kept client's next renegotiation only (up to reneg-sec later);
    at 2.6's SIGHUP it reconnects under the new range at once. Told RESTART, never held off."""
    # (OpenSSL names TLS 1.0 `TLSv1`: read as "1" it was no version, and a kept TLS 1.0 client
    # stayed past the very reload that retired it, review46d)
    have = "1.0" if version == "TLSv1" else (version or "").removeprefix("TLSv")
    if have not in TLS_VERSIONS:
        return None                         # no key with TLS, or a name we do not know: nothing to say
    low = tls_version_min(tls)
    high = tls.tls_version_max
    if low in TLS_VERSIONS and TLS_VERSIONS.index(have) < TLS_VERSIONS.index(low):
        return Tightened(f"its TLS {have} is below the reload's tls-version-min {low}")
    if high in TLS_VERSIONS and TLS_VERSIONS.index(have) > TLS_VERSIONS.index(high):
        return Tightened(f"its TLS {have} is above the reload's tls-version-max {high}")
    return None


def given_under(st, ccd) -> Given:
    """What the settings `st` (a ServerSettings) and the effective ccd file `ccd` give a client."""
    return Given(ccd, tuple(st.push), tuple(tuple(x) for x in (st.addressing_push or ((), ()))),
                 tuple(getattr(st, "connect_command", ()) or ()), tuple(getattr(st, "admission", ()) or ()))


def what_differs(was: Given, now: Given, credentials: bool = False) -> str | None:
    """Why a client given `was` would now be given something else (for the log), else None; an
    admission check it never passed first (a Tightened reason). `credentials`: the client logged
    in with a username, so a leniency for logins without one (kind "off") was not its way in."""
    if (t := tightened(was.admission, now.admission, credentials=credentials)) is not None:
        return t
    if was.ccd != now.ccd:
        if was.ccd is None:
            return "its client-config-dir file is new"
        if now.ccd is None:
            return "its client-config-dir file is gone"
        return "its client-config-dir file changed"
    if was.connect != now.connect:
        return "the client-connect line changed"
    if was.push != now.push:
        return "the push lines changed"
    if was.addressing != now.addressing:
        return "the server's addressing pushes changed"
    return None
