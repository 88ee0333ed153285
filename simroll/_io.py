"""The one way simroll writes a file: checked first, then written atomically.

Every file simroll writes (``--trace``, ``--html``, ``--plots``, ``fuzz --out``, matrix and
sweep tables, the failure store) goes through :func:`atomic_open` or one of the
``atomic_write_*`` helpers, and every command asks :func:`check_new_file` ("may I write
here?") for each of its output paths before any long work starts.

Inputs (scenario files, traces) are read by :func:`read_input`: regular files only, never
more than a limit.

The rules for outputs, in one place:

* ``overwrite`` is the one keyword, ``False`` the one default: an existing file is refused
  with ``PATH: file exists; pass --force to overwrite it`` (the CLI's ``--force`` passes
  ``overwrite=True``).
* Only a regular file is ever replaced, even with ``overwrite``: a device (``/dev/null``),
  a FIFO, a directory or a symbolic link is refused, so running as root cannot turn a
  device node or a link into a regular file.
* The content goes to a temporary file in the same directory, is flushed to disk, and
  only then takes the target's name: with ``os.replace`` when overwriting, else with
  ``os.link``, which fails if another process took the name meanwhile. An exception,
  Ctrl-C or SIGTERM while writing removes the temporary file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from simroll.errors import UsageError

StrPath = str | os.PathLike[str]


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_new_file(path: StrPath, overwrite: bool = False, flag: str | None = None, make_parents: bool = False) -> None:
    """May simroll write ``path``? Raise :class:`UsageError` if not; call it before long work.

    Refused: an existing path unless ``overwrite``; anything but a regular file, whatever
    ``overwrite`` says; a path whose directory does not exist (with ``make_parents``, whose
    nearest existing ancestor is not a directory). ``flag`` (e.g. ``"--html"``) is named in
    the message when given.
    """
    where = f"{os.fspath(path)}: {flag}: " if flag else f"{os.fspath(path)}: "
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = Path(path).parent
        while make_parents and not os.path.lexists(parent) and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"{where}directory {os.fspath(parent)!r} does not exist") from None
        return
    except OSError as e:
        raise UsageError(f"{where}cannot write: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{where}{_kind(st.st_mode)}; simroll only ever replaces regular files")
    if not overwrite:
        raise UsageError(f"{where}file exists; pass --force to overwrite it")


def read_input(path: StrPath, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; :class:`OSError` or ValueError if not.

    Only a regular file is read: a FIFO with no writer would hang and ``/dev/zero`` would
    never end, and ``stat()`` says 0 bytes for both. The file is opened without blocking,
    checked with ``fstat`` on the open descriptor (no race with a rename), and read up to
    ``limit + 1`` bytes, so an oversized file is refused without reading it whole. Raises
    ``ValueError("... more than the limit of N bytes")`` for a file over the limit and
    ``ValueError("<what it is>, not a regular file")`` for anything else.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{_kind(st.st_mode)}, not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"more than the limit of {limit} bytes")
    return b"".join(chunks)


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


def _publish(tmp: str, target: Path, overwrite: bool) -> None:
    """Give ``tmp`` the name ``target``: replace it if ``overwrite``, else only if nothing took the name meanwhile."""
    if overwrite:
        check_new_file(target, overwrite=True)  # still a regular file (or nothing)?
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
def atomic_open(
    path: StrPath, mode: str = "w", overwrite: bool = False, encoding: str | None = "utf-8", newline: str | None = "\n"
) -> Iterator[IO[Any]]:
    """Open a temporary file that becomes ``path`` when the ``with`` block ends without an exception.

    ``mode`` is ``"w"`` (text; ``encoding`` and ``newline`` apply) or ``"wb"``. Raises
    :class:`UsageError` at once, before anything is written, if :func:`check_new_file`
    refuses ``path``, and again at the end if another process created it in the meantime.
    On an exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: expected 'w' or 'wb'")
    target = Path(path)
    check_new_file(target, overwrite)
    binary = mode == "wb"
    # Ctrl-C and SIGTERM are held off (blocked) from creating the temporary file until the block
    # that removes it on an exception has begun: one arriving in between left the file behind
    held = _hold_signals()
    try:
        tmp, fd = _temp_beside(target, binary)
    except OSError as e:  # read-only directory, no space, ...
        _release_signals(held)
        raise UsageError(f"{os.fspath(path)}: cannot write: {e.strerror or e}") from None
    except BaseException:
        _release_signals(held)
        raise
    try:
        try:
            if binary:
                f: IO[Any] = os.fdopen(fd, "wb")
            else:
                f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        except BaseException:  # a half-built file object may have closed fd already
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        try:
            _release_signals(held)  # a signal held meanwhile is raised here, inside the cleanup
            held = None
            try:
                with f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())  # the content is on disk before the name points at it
            except OSError as e:  # no space left, an I/O error: say where, never a traceback
                raise UsageError(f"{os.fspath(path)}: cannot write: {e.strerror or e}") from None
        finally:
            f.close()
        try:
            _publish(tmp, target, overwrite)
        except OSError as e:  # e.g. the target became a directory
            raise UsageError(f"{os.fspath(path)}: cannot write: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _release_signals(held)


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _hold_signals() -> set[int | signal.Signals] | None:
    """Block SIGINT and SIGTERM in this thread; returns the mask to restore (None where not possible)."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)


def _release_signals(old: set[int | signal.Signals] | None) -> None:
    """Restore the mask :func:`_hold_signals` returned; a signal that came meanwhile is handled now."""
    if old is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def atomic_write_text(path: StrPath, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "w", overwrite=overwrite) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: StrPath, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "wb", overwrite=overwrite) as f:
        f.write(data)
    return Path(path)


__all__ = ["atomic_open", "atomic_write_text", "atomic_write_bytes", "check_new_file", "read_input"]
