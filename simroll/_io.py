"""Writing output files atomically: a reader (or a killed run) sees the old file or the whole new one.

Every file simroll writes (``--trace``, ``--html``, ``--plots``, ``fuzz --out``) goes through
:func:`atomic_open` or :func:`atomic_write_text`: the content goes to a temporary file in the
same directory, is flushed to disk, and only then takes the target's name with one
``os.replace`` (or ``os.link`` when the target must not exist). An exception, Ctrl-C or
SIGTERM while writing removes the temporary file and leaves the target as it was.

An existing file is never overwritten unless ``force`` is true; the refusal is a
:class:`~simroll.errors.UsageError` reading ``PATH: file exists; pass --force to overwrite it``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from simroll.errors import UsageError

StrPath = str | os.PathLike[str]


def check_new_file(path: StrPath, force: bool = False) -> None:
    """Raise :class:`UsageError` if ``path`` exists and ``force`` is false (call it before long work)."""
    if not force and os.path.lexists(path):
        raise UsageError(f"{os.fspath(path)}: file exists; pass --force to overwrite it")


def _temp_beside(target: Path, binary: bool) -> tuple[str, int]:
    """Create ``.NAME.PID.N.tmp`` next to ``target`` (O_EXCL, mode 0666 minus the umask, like open())."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) * binary
    n = 0
    while True:
        tmp = str(target.with_name(f".{target.name}.{os.getpid()}.{n}.tmp"))
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            n += 1


def _publish(tmp: str, target: Path, force: bool) -> None:
    """Give ``tmp`` the name ``target``: replace it if ``force``, else only if nothing took the name meanwhile."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and refuses an existing target, unlike os.replace
    except FileExistsError:
        raise UsageError(f"{os.fspath(target)}: file exists; pass --force to overwrite it") from None
    except OSError:  # a filesystem without hard links: check, then replace
        check_new_file(target)
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: StrPath, mode: str = "w", force: bool = False, encoding: str | None = "utf-8",
                newline: str | None = "\n") -> Iterator[IO[Any]]:
    """Open a temporary file that becomes ``path`` when the ``with`` block ends without an exception.

    ``mode`` is ``"w"`` (text; ``encoding`` and ``newline`` apply) or ``"wb"``. Raises
    :class:`UsageError` at once, before anything is written, if ``path`` exists and ``force``
    is false, and again at the end if another process created it in the meantime. On an
    exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: expected 'w' or 'wb'")
    target = Path(path)
    check_new_file(target, force)
    if not target.parent.is_dir():
        raise UsageError(f"{os.fspath(path)}: directory {os.fspath(target.parent)!r} does not exist")
    binary = mode == "wb"
    try:
        tmp, fd = _temp_beside(target, binary)
    except OSError as e:  # read-only directory, no space, ...
        raise UsageError(f"{os.fspath(path)}: cannot write: {e.strerror or e}") from None
    try:
        if binary:
            f: IO[Any] = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the content is on disk before the name points at it
        try:
            _publish(tmp, target, force)
        except OSError as e:  # e.g. the target is a directory
            raise UsageError(f"{os.fspath(path)}: cannot write: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: StrPath, text: str, force: bool = False) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "w", force=force) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: StrPath, data: bytes, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "wb", force=force) as f:
        f.write(data)
    return Path(path)


__all__ = ["atomic_open", "atomic_write_text", "atomic_write_bytes", "check_new_file"]
