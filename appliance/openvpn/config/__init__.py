"""OpenVPN 2.6 config files (client and server) → a typed Options object.

Layout: lexer.py (tokens, OpenVPN's limits), directives.py (the shape of a table entry),
d_network.py / d_security.py / d_tls.py / d_misc.py (the entries and their handlers), table.py (the merged
table and its invariants), parser.py (running the table over a file), render.py (`check`),
ccd.py (client-config-dir files), model.py (Options).
"""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from ..regular_file import read_regular_file
from .ccd import parse_ccd
from .lexer import tokenize
from .model import DEFAULT_CIPHERS, MSSFIX_DEFAULT, CcdOptions, ConfigErrors, Options, Remote, Route
from .parser import ParseState
from .render import render_options
from .table import TABLE

__all__ = ["CcdOptions", "ConfigError", "ConfigErrors", "DEFAULT_CIPHERS", "MSSFIX_DEFAULT", "Options", "Remote",
           "Route", "TABLE", "load_config", "parse_ccd", "parse_config", "render_options", "tokenize"]


def _read(path: str) -> bytes:
    """A file a directive names: a pipe or device named by mistake is refused, not waited on."""
    return read_regular_file(path)


def parse_config(text: str, path: str = "<string>", read_file: Callable[[str], bytes] | None = None,
                 ignore_scripts: bool = False) -> Options:
    """Parse OpenVPN config text; raises ConfigError (ConfigErrors for several) located by file:line.
    `ignore_scripts` (`run --no-scripts`): up/down/... scripts are skipped with a note instead of refused."""
    return ParseState(path, read_file or _read, TABLE, ignore_scripts).parse(text)


def load_config(path: str, ignore_scripts: bool = False, pipe_ok: bool = True) -> Options:
    """The config file at `path`, parsed. At start it may come from a pipe (`run /dev/stdin`);
    a reload (`pipe_ok=False`) reads a regular file only: it runs on the event loop, and a pipe
    there (the start's, which gives nothing more, or a file swapped for a FIFO) waited for a
    writer with every client's packets and SIGTERM (regular_file.py)."""
    try:
        if pipe_ok:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        else:
            text = read_regular_file(path).decode("utf-8", "replace")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path) from None
    return parse_config(text, path, ignore_scripts=ignore_scripts)
