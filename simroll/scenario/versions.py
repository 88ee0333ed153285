"""RPC version numbers and oslo.messaging's compatibility rule."""

from __future__ import annotations

import re
from typing import NamedTuple

VERSION_PATTERN = r"^\d{1,9}\.\d{1,9}(\.\d{1,9})?$"  # at most 9 digits a component, as the loader enforces
_VERSION_RE = re.compile(VERSION_PATTERN)


class Version(NamedTuple):
    """``major.minor[.revision]``; ordered as a tuple."""

    major: int
    minor: int
    rev: int = 0

    @classmethod
    def parse(cls, text: str) -> Version:
        if not _VERSION_RE.match(text):
            raise ValueError(f"not a version: {text!r} (expected major.minor, e.g. '1.2')")
        parts = [int(p) for p in text.split(".")]
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}" if self.rev == 0 else f"{self.major}.{self.minor}.{self.rev}"


def is_compatible(implemented: Version, requested: Version) -> bool:
    """oslo.messaging's ``version_is_compatible(imp_version, version)``.

    Same major; requested minor <= implemented minor; on equal minors the
    requested revision must not exceed the implemented one.
    """
    if requested.major != implemented.major:
        return False
    if requested.minor > implemented.minor:
        return False
    if requested.minor == implemented.minor and requested.rev > implemented.rev:
        return False
    return True
