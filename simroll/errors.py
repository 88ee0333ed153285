"""The one exception hierarchy of simroll.

Every error a user can cause derives from :class:`SimrollError`; the CLI catches
it in one place and exits 2 with ``FILE: where: message``.
"""

from __future__ import annotations


class SimrollError(Exception):
    """Base class of every error simroll raises on purpose."""


class ScenarioError(SimrollError, ValueError):
    """A scenario file (or text) is not a valid scenario.

    Also a :class:`ValueError`, so ``except ValueError`` catches a bad scenario as it would
    any other bad value.

    ``where`` is a path inside the document such as ``releases.new.rpc.endpoints[0].version``,
    optionally followed by the line it starts on.
    """

    def __init__(self, source: str, where: str, message: str):
        self.source = source
        self.where = where
        self.message = message
        super().__init__(f"{source}: {where}: {message}")


class UsageError(SimrollError):
    """A command-line or API argument is invalid (a path, a flag value)."""
