"""OpenVPN 2.6 config files (client and server) → a typed Options object.

Layout: lexer.py (tokens, OpenVPN's limits), directives.py (the shape of a table entry),
d_network.py / d_security.py / d_tls.py / d_misc.py (the entries and their handlers), table.py (the merged
table and its invariants), parser.py (running the table over a file), render.py (`check`),
ccd.py (client-config-dir files), model.py (Options).
"""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from ..peernames import ERRORS
from ..regular_file import CONFIG, KEY_MATERIAL, NOT_REGULAR, read_limited, read_regular_file
from .ccd import parse_ccd
from .lexer import tokenize
from .model import DEFAULT_CIPHERS, MSSFIX_DEFAULT, TUN_MTU_DEFAULT, CcdOptions, ConfigErrors, Options, Remote, Route
from .parser import ParseState
from .render import render_options
from .table import TABLE

__all__ = ["CcdOptions", "ConfigError", "ConfigErrors", "DEFAULT_CIPHERS", "MSSFIX_DEFAULT", "Options", "TUN_MTU_DEFAULT", "Remote",
           "Route", "TABLE", "load_config", "parse_ccd", "parse_config", "render_options", "tokenize"]


def _read(path: str) -> bytes:
    """A file a directive names for its contents (`ca`, `key`, `auth-user-pass`...): a pipe or
    device named by mistake is refused, not waited on, and so is a file too large for one."""
    return read_regular_file(path, KEY_MATERIAL)


def parse_config(text: str, path: str = "<string>", read_file: Callable[[str], bytes] | None = None,
                 ignore_scripts: bool = False, no_scripts: bool = False) -> Options:
    """Parse OpenVPN config text; raises ConfigError (ConfigErrors for several) located by file:line.
    `ignore_scripts` (`run --no-scripts`): up/down/... scripts are skipped with a note instead of refused;
    `no_scripts` (the appliance TOML: the VM image runs none): they are refused unless skipped."""
    # An injected reader (tests) reads the files `config FILE` names too.
    st = ParseState(path, read_file or _read, TABLE, ignore_scripts, read_config=read_file)
    st.no_scripts = no_scripts
    return st.parse(text)


def load_command_line(argv: list[str], ignore_scripts: bool = False) -> Options:
    """OpenVPN's command line (`--config FILE --status ...`, cmdline.py) as a config."""
    from .cmdline import config_text
    return reparse_command_line(config_text(argv), ignore_scripts)


def reparse_command_line(text: str, ignore_scripts: bool = False) -> Options:
    """The config of a command line's text (at start, and again at a reload: its files re-read)."""
    from .cmdline import SOURCE
    opts = parse_config(text, SOURCE, ignore_scripts=ignore_scripts)
    opts.cmdline = text
    return opts


def load_config(path: str, ignore_scripts: bool = False, again: bool = False) -> Options:
    """The config at `path`. At start it may come from a pipe (`run /dev/stdin`); read `again` (a
    reload, on the event loop) only a regular file is: a FIFO's open() would wait for a writer with
    every client's packets waiting behind it, and a pipe read at start has nothing left."""
    try:
        if again:
            data = read_regular_file(path, CONFIG)
        else:
            with open(path, "rb") as f:           # a pipe too, at start (its size unknown)
                data = read_limited(f, CONFIG, path)
    except OSError as e:
        why = e.strerror or str(e)
        if e.strerror == NOT_REGULAR:
            why += "; a config read from a pipe at start cannot be read again: restart to change it"
        raise ConfigError(f"cannot read: {why}", path) from None
    # Its bytes as they are for the directives that pass them on (parser.BYTES_DIRECTIVES).
    return parse_config(data.decode("utf-8", ERRORS), path, ignore_scripts=ignore_scripts)
