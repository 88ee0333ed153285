"""How an error message quotes a value and names a place in a scenario document.

One set of helpers for the loader and the pattern expander, so that both say
``releases.new.rpc.endpoints[0].version`` and ``got '...'`` the same way.
"""

from __future__ import annotations

import re
from typing import Any

_WORD = re.compile(r"[\w\-]+")


def short(text: str, limit: int = 60) -> str:
    """At most ``limit`` characters of ``text`` (a hostile file may hold a megabyte in one key or value)."""
    return text if len(text) <= limit else text[:limit] + "..."


def show(value: Any) -> str:
    """``repr(value)``, cut short: an error message quotes the bad value, not a megabyte of it."""
    return short(repr(value), 80)


def join(where: str, key: Any) -> str:
    """``where.key``; a key that is not a plain word is shown as ``where['it is']`` so the path stays readable."""
    text = str(key)
    if not _WORD.fullmatch(text):
        return f"{where}[{short(text)!r}]"
    return f"{where}.{text}" if where else text


def path(loc: tuple[Any, ...]) -> str:
    """A pydantic-style location as a path: ``plan[2].restart``; ``document`` for the root."""
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else join(out, part)
    return out or "document"


def is_tag(part: Any, tags: frozenset[str] | set[str] = frozenset()) -> bool:
    """pydantic puts union members and validator names into ``loc``; they are not places in the file.

    ``tags`` adds the discriminator tags of the caller's unions (e.g. the step types).
    """
    return isinstance(part, str) and (
        "[" in part
        or part in {"EngineGroupSpec", "constrained-str"}
        or part in tags
        or part.endswith("Spec")
        or part.startswith("function-")
    )
