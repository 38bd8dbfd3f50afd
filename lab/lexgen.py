"""Config lines from OpenVPN 2.6's lexing rules (options.c parse_line, read_config_file,
read_inline_file), generated with a fixed seed: the differential test of our config reader
against Debian's openvpn (tests/unit/test_config_lexing_vs_openvpn.py, README "helper lexdiff49").

Each generated line is a `verify-x509-name` line, the directive whose value 2.6.14 prints in its
`verb 4` options dump (`verify_x509_name = '...'`, `verify_x509_type = N`) and ours keeps as
Options.verify_x509_name: any string, so what the lexer made of the line is seen on both sides.
"""
from __future__ import annotations

import random

DIRECTIVE = "verify-x509-name"

# Blanks in C's isspace (what 2.6 reads as a separator) and characters Python's str.strip() or
# str.split() take for blanks while C does not (\x1c-\x1f, U+0085, U+00A0, U+2028 ...).
C_BLANKS = [" ", "\t", "\x0b", "\x0c", "\r"]
NOT_C_BLANKS = ["\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000"]

# Pieces of a token, each a rule of parse_line.
_PLAIN = ["a", "CN=x", "b.c", "-", "x=1,y", "é", "[inline]", "<", ">", "'", '"']
_DQ_INNER = ["a", " ", "\t", "#", ";", "'", "\\\\", '\\"', "\\ ", "\\a", "\\#", "x y", "é", "\\\t"]
_SQ_INNER = ["a", " ", "#", ";", '"', "\\", "\\\\", "\\a", "x y"]
# (mostly the escapes 2.6 takes: a bad one refuses the whole line)
_ESCAPES = ["\\\\", '\\"', "\\ ", "\\\t", "\\\\", '\\"', "\\ ", "\\#", "\\;", "\\a", "\\'", "\\"]


def _fragment(rng: random.Random) -> str:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice(_PLAIN)
    if kind == 1:
        return '"' + "".join(rng.choice(_DQ_INNER) for _ in range(rng.randrange(4))) + '"' * (rng.random() > 0.1)
    if kind == 2:
        return "'" + "".join(rng.choice(_SQ_INNER) for _ in range(rng.randrange(4))) + "'" * (rng.random() > 0.1)
    if kind == 3:
        return rng.choice(_ESCAPES)
    if kind == 4:
        return rng.choice(["#", ";", "#c", ";c"])
    if kind == 5:
        return rng.choice(NOT_C_BLANKS) + rng.choice(_PLAIN)
    return rng.choice(['""', "''", '""', "''", '"', "'"])


def _token(rng: random.Random) -> str:
    return "".join(_fragment(rng) for _ in range(rng.randint(1, 3)))


def _blank(rng: random.Random, empty: bool = True) -> str:
    pool = C_BLANKS + ([""] * 4 if empty else []) + [" " * 3, " \t "]
    out = rng.choice(pool)
    return out if out or empty else " "


def _word(rng: random.Random) -> str:
    return rng.choice([DIRECTIVE] * 6 + ["--" + DIRECTIVE, f'"{DIRECTIVE}"', f"'{DIRECTIVE}'",
                                          f"verify-x509\\-name", f"{DIRECTIVE}\\ ", f'"--{DIRECTIVE}"',
                                          f"setenv opt {DIRECTIVE}", f"setenv 'opt' \"{DIRECTIVE}\""])


def _type(rng: random.Random) -> str:
    return rng.choice(["", "", "name", "subject", "name-prefix", '"name"', "'name-prefix'",
                       "na\\ me", "name#x", "NAME", "name extra"])


def _tail(rng: random.Random) -> str:
    return rng.choice(["", "", "", " ", "\t", " # c", " ;c", "#c", " # '\"\\", "\r", "\\ ", " \\", " \"",
                       " '", "\x00x", " " + rng.choice(NOT_C_BLANKS)])


def structured(rng: random.Random) -> str:
    """A line built from the rules' pieces: blanks, a `--`, quoting of the directive, a value of
    one to three fragments (quotes, escapes, comments, non-C blanks), a type, a tail."""
    line = _blank(rng) + _word(rng) + _blank(rng, empty=False) + _token(rng)
    t = _type(rng)
    if t:
        line += _blank(rng, empty=False) + t
    return line + _tail(rng)


_RAW = ["a", "b", "c", "=", " ", " ", "\t", "\\", '"', "'", "#", ";", "\r", "\x0b", "é", "\xa0", "\x1c",
        "\u2028", "-"]


def raw(rng: random.Random) -> str:
    """`verify-x509-name ` and up to ten characters drawn from the lexer's special characters."""
    return DIRECTIVE + " " + "".join(rng.choice(_RAW) for _ in range(rng.randint(1, 10)))


def lines(seed: int, count: int) -> list[str]:
    """`count` distinct generated lines (half structured, half raw), the same for the same seed."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        out[(structured if len(out) % 2 == 0 else raw)(rng)] = None
    return list(out)
