"""The process's working directory, which a profile's `cd DIR` sets: one place for both entry
points (`run profile.ovpn`, the appliance TOML) and for a server's reload.

OpenVPN 2.6 chdir()s to DIR while it reads the profile and stays there (its daemon() keeps the
directory when cd is given). Why it matters: the scripts (tls-verify, client-connect,
auth-user-pass-verify, learn-address...) start in the process's directory, and a relative name in
their arguments, or one they read themselves (an allow list, a revoked/ directory), is DIR's under
OpenVPN. Left in the starting directory, such a check read another file or none: a script failing
open on a missing revoked/CN let a revoked client in. The parser reads the profile's own relative
names from DIR (d_profile `cd`); this module puts the process there too.
"""
from __future__ import annotations

import os

# The directory the process started in: where it goes back to when a reload takes `cd` away, as
# a restart with that config would leave it.
_started_in: str | None = None


def started_in(path: str) -> None:
    """Where the process counts as started from now on (`daemon` moves it to /: daemon.py)."""
    global _started_in
    _started_in = path


def enter_cd_dir(opts) -> str | None:
    """At the start: into `cd DIR` if the profile has one. Returns why it could not, else None."""
    global _started_in
    if _started_in is None:
        try:
            _started_in = os.getcwd()
        except OSError:
            pass                    # started in a removed directory: a reload cannot go back there
    if not opts.cd_dir:
        return None
    if not opts.path.startswith("<"):
        # (a reload reads the file again, and takes its relative names from its directory)
        opts.path = os.path.abspath(opts.path)
    try:
        os.chdir(opts.cd_dir)
    except OSError as e:
        return f"cd {opts.cd_dir}: {e.strerror or e}"
    return None


def follow_reload(old, new) -> str | None:
    """A reload whose `cd` differs from the running one's: into the new DIR, or back to the
    directory the process started in when the line is gone -- where a restart with the new
    config would run, so the scripts started from now on run where its relative names are read
    from (a reload that kept the old directory ran them elsewhere). Returns why it could not (the
    reload is then refused), else None."""
    if new.cd_dir == old.cd_dir:
        return None
    target = new.cd_dir or _started_in
    if target is None:
        return None
    try:
        os.chdir(target)
    except OSError as e:
        return f"cd {target}: {e.strerror or e}"
    return None


def back_to(old) -> None:
    """A reload refused after follow_reload moved: back to the running config's directory."""
    target = old.cd_dir or _started_in
    if target is not None:
        try:
            os.chdir(target)
        except OSError:
            pass                    # gone meanwhile: relative names fail as they would anyway
