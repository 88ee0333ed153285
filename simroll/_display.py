"""Rich display in notebooks without an upward import.

A result type (``RunResult``, ``FuzzResult``, ...) lives below the views that draw it, so it
cannot import them. Its ``_repr_html_`` asks this registry instead; the top-level package
(:mod:`simroll`) registers each view when it is imported, which happens before any module
of the package runs. The views themselves are imported on the first display.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

_VIEWS: dict[str, Callable[[Any], str]] = {}


def register(type_name: str, view: Callable[[Any], str]) -> None:
    """Draw objects of the type named ``module.QualName`` with ``view`` (returns an HTML fragment)."""
    _VIEWS[type_name] = view


def html(obj: Any) -> str:
    """The HTML fragment for ``obj``: its registered view, else its ``repr`` escaped."""
    view = _VIEWS.get(f"{type(obj).__module__}.{type(obj).__qualname__}")
    return view(obj) if view is not None else f"<pre>{escape(repr(obj))}</pre>"
