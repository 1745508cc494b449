"""Macros in submit commands: checks before htcondor2 expands $(...), and $$() from the slot.

    submit side:  $(Process), $(name:default), $Fn(name)  ── htcondor2 expands them; first
                  unterminated_macro() and macro_cycle() find what it would choke or hang on
    pilot side:   $$(Attr), $$(Attr:default), $$([expr])  ── substitute_slot_macros(text, slot ad)
                  once the job has landed: the submit side keeps them verbatim

Pure: no I/O. A $$() the slot cannot satisfy raises SlotMacroError; HTCondor holds such a job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import classad2


class SlotMacroError(ValueError):
    """A $$() reference the slot cannot satisfy: HTCondor holds such a job."""


# --- $(...) references between submit macros ------------------------------------------------

_MACRO_OPEN = re.compile(r"\$\$?[A-Za-z_]*\(")
# $(name), $(name:default), $Fn(name), $INT(name)...: references between macros.
_MACRO_REF = re.compile(r"(?<!\$)\$([A-Za-z_]*)\(\s*([A-Za-z_][A-Za-z0-9_.]*)")
_NOT_MACRO_REFS = frozenset({"env", "random_choice", "random_integer", "choice"})


def closing_paren(text: str, start: int) -> int | None:
    """Index of the ')' matching a '(' just before `start`, allowing nested parentheses."""
    depth = 1
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return None


def unterminated_macro(value: str) -> str | None:
    for opened in _MACRO_OPEN.finditer(value):
        if closing_paren(value, opened.end()) is None:
            return value[opened.start():]
    return None


def macro_cycle(values: Mapping[str, str]) -> list[str] | None:
    """A loop of $(references): htcondor2's expand() never returns on one, so find it first."""
    refs = {name.lower(): {ref.lower() for fn, ref in _MACRO_REF.findall(value)
                           if fn.lower() not in _NOT_MACRO_REFS}
            for name, value in values.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done or name not in refs:
            return None
        for ref in sorted(refs[name]):
            if cycle := visit(ref, [*path, name]):
                return cycle
        done.add(name)
        return None

    return next((cycle for name in sorted(refs) if (cycle := visit(name, []))), None)


# --- $$() substitution on the pilot ---------------------------------------------------------


def substitute_slot_macros(text: str, slot_ad: classad2.ClassAd) -> str:
    """Replace $$(Attr), $$(Attr:default) and $$([expr]) with values from the slot ad."""
    parts, position = [], 0
    while (start := text.find("$$(", position)) != -1:
        end = closing_paren(text, start + 3)
        if end is None:
            raise SlotMacroError(f"unterminated $$( in {text!r}")
        parts += [text[position:start], _slot_value(text[start + 3:end], slot_ad)]
        position = end + 1
    return "".join([*parts, text[position:]])


def _slot_value(body: str, slot_ad: classad2.ClassAd) -> str:
    if body.startswith("[") and body.endswith("]"):
        try:
            value = classad2.ExprTree(body[1:-1]).eval(slot_ad)
        except classad2.ClassAdException:
            raise SlotMacroError(f"$$({body}): not a valid ClassAd expression") from None
        if isinstance(value, classad2.Value):
            raise SlotMacroError(f"$$({body}) evaluates to {value.name} in the slot ad")
        return _as_text(value)
    name, has_default, default = (part.strip() for part in body.partition(":"))
    try:
        value = slot_ad.eval(name)
    except KeyError:
        value = classad2.Value.Undefined
    if not isinstance(value, classad2.Value):
        return _as_text(value)
    if has_default:
        return default
    raise SlotMacroError(f"$$({name}): the slot ad has no attribute {name}")


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
