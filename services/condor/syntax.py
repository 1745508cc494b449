"""Sizes, arguments and environment as submit files write them (HTCondor's syntax). Pure.

    request_memory = 2 GB          ─▶ parse_memory_mib ─▶ 2048   (plain number: MiB)
    request_disk = 500M            ─▶ parse_disk_kib   ─▶ 512000 (plain number: KiB)
    arguments = "a 'b c' d"        ─▶ parse_arguments  ─▶ ["a", "b c", "d"]   (new syntax)
    arguments = a b c              ─▶ parse_arguments  ─▶ ["a", "b", "c"]     (old syntax)
    environment = "A=1 B='x y'"    ─▶ parse_environment ─▶ {"A": "1", "B": "x y"}
    environment = A=1;B=2          ─▶ parse_environment ─▶ {"A": "1", "B": "2"}

format_arguments and format_environment write the canonical new syntax back,
as job ads carry it in Arguments and Environment ("raw": no outer quotes, a "
stands for itself); parse_raw_arguments and parse_raw_environment read it again.
The old syntax reaches the ad as HTCondor writes it too: Args = "a b c",
Env = "A=1;B=2" (with EnvDelim).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

_C_SPACE = " \t\n\r\v\f"  # HTCondor splits words on C's whitespace, not Unicode's
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([KMGT])B?)?", re.I)
_KIB_PER_UNIT = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}


def _size_kib(text: str, default_unit: str) -> float:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size: use a number with an optional unit "
                         "K, KB, M, MB, G, GB, T or TB")
    kib = float(match[1]) * _KIB_PER_UNIT[(match[2] or default_unit).upper()]
    if kib <= 0:
        raise ValueError(f"{text!r} must be more than zero")
    return kib


def parse_memory_mib(text: str) -> int:
    """request_memory → MiB, rounded up; a plain number is MiB, as in HTCondor."""
    return math.ceil(_size_kib(text, "M") / 1024)


def parse_disk_kib(text: str) -> int:
    """request_disk → KiB, rounded up; a plain number is KiB, as in HTCondor."""
    return math.ceil(_size_kib(text, "K"))


def _split_new_syntax(body: str, *, raw: bool = False) -> list[str]:
    """Words of HTCondor's "new" quoting: whitespace separates, '...' groups, and '' / ""
    stand for a literal ' / " (inside or outside the single quotes). In the raw form a job
    ad carries, a " is itself."""
    words: list[str] = []
    word: list[str] | None = None  # None between words, so '' can make an empty word
    quoted, index = False, 0
    while index < len(body):
        char, pair = body[index], body[index:index + 2]
        index += 1
        if (pair == "''" and quoted) or (pair == '""' and not raw):
            word, index = [*(word or []), char], index + 1
        elif char == '"' and not raw:
            raise ValueError('a lone " inside the double quotes: write "" for a literal "')
        elif char == "'":
            word, quoted = word or [], not quoted
        elif char in _C_SPACE and not quoted:
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = [*(word or []), char]
    if quoted:
        raise ValueError("unbalanced single quote")
    return words if word is None else [*words, "".join(word)]


def _new_syntax_body(text: str) -> str | None:
    """The text inside the outer double quotes, or None for the old syntax."""
    text = text.strip()
    if not text.startswith('"'):
        return None
    if len(text) < 2 or not text.endswith('"'):
        raise ValueError("unbalanced double quote: the new syntax is enclosed in \"...\"")
    return text[1:-1]


def parse_arguments(text: str) -> list[str]:
    """`"a 'b c' d"` (new syntax) or `a b c` (old syntax, \\" for a quote) → argv."""
    body = _new_syntax_body(text)
    if body is not None:
        return _split_new_syntax(body)
    if re.search(r'(?<!\\)"', text):
        raise ValueError('unbalanced double quote: to group words write the whole value in '
                         "double quotes, e.g. arguments = \"a 'b c'\"")
    return [word.replace('\\"', '"') for word in re.split(f"[{_C_SPACE}]+", text) if word]


def is_new_syntax(text: str) -> bool:
    return text.strip().startswith('"')


def parse_raw_arguments(text: str) -> list[str]:
    """An ad's Arguments (raw new syntax) → argv."""
    return _split_new_syntax(text, raw=True)


def parse_raw_environment(text: str, delimiter: str | None = None) -> dict[str, str]:
    """An ad's Environment (raw new syntax), or with `delimiter` its old-syntax Env."""
    if delimiter is not None:
        return _environment(text.split(delimiter), new=False)
    return _environment(_split_new_syntax(text, raw=True), new=True)


def parse_environment(text: str) -> dict[str, str]:
    """`"A=1 B='x y'"` (new syntax) or `A=1;B=2` (old syntax) → {name: value}, in order."""
    body = _new_syntax_body(text)
    entries = _split_new_syntax(body) if body is not None else text.split(";")
    return _environment(entries, new=body is not None)


def _environment(entries: list[str], *, new: bool) -> dict[str, str]:
    env = {}
    for entry in (entry for entry in entries if entry.strip() or new):
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"environment entry {entry!r} is not NAME=value")
        env[name.strip()] = value
    return env


def _quote_word(word: str) -> str:
    """As HTCondor writes a raw new-syntax word: quoted only when empty or when it holds
    whitespace or a ' (a " is itself in the raw form)."""
    if word and not re.search(f"[{_C_SPACE}']", word):
        return word
    return "'" + word.replace("'", "''") + "'"


def format_arguments(argv: Sequence[str]) -> str:
    """argv → HTCondor's raw new-syntax Arguments string (parse_arguments of it, in
    double quotes with " doubled, gives argv back)."""
    return " ".join(_quote_word(word) for word in argv)


def format_environment(env: Mapping[str, str]) -> str:
    return " ".join(f"{name}={_quote_word(value) if value else ''}"
                    for name, value in env.items())


def format_old_arguments(argv: Sequence[str]) -> str:
    """argv from the old syntax → Args: the words as they are (they hold no whitespace)."""
    return " ".join(argv)


def format_old_environment(env: Mapping[str, str]) -> str:
    return ";".join(f"{name}={value}" for name, value in env.items())
