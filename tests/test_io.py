"""Output files are written atomically and never overwritten by surprise (simroll._io, run --trace)."""

import os
import stat

import pytest
from conftest import SCENARIOS

import simroll.run
from simroll._io import atomic_open, atomic_write_bytes, atomic_write_text, check_new_file
from simroll.cli import main
from simroll.errors import UsageError


def test_writes_the_text_and_leaves_no_temporary_file(tmp_path):
    p = tmp_path / "out.txt"
    assert atomic_write_text(p, "a\nb\n") == p
    assert p.read_bytes() == b"a\nb\n"
    assert os.listdir(tmp_path) == ["out.txt"]
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"


def test_refuses_an_existing_file_unless_forced(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(UsageError) as exc:
        atomic_write_text(p, "new")
    assert str(exc.value) == f"{p}: file exists; pass --force to overwrite it"
    assert p.read_text() == "old"
    with pytest.raises(UsageError):
        check_new_file(p)
    atomic_write_text(p, "new", overwrite=True)
    assert p.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_the_old_file_and_no_debris(tmp_path, exc):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(type(exc)):
        with atomic_open(p, overwrite=True) as f:
            f.write("half of the new")
            raise exc
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_file_created_meanwhile_is_not_clobbered(tmp_path):
    p = tmp_path / "out.txt"
    with pytest.raises(UsageError, match="file exists"):
        with atomic_open(p) as f:
            f.write("ours")
            p.write_text("theirs")  # another process took the name while we wrote
    assert p.read_text() == "theirs"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_mode_follows_the_umask_like_open(tmp_path):
    atomic_write_text(tmp_path / "a", "x")
    with open(tmp_path / "b", "w") as f:
        f.write("x")
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == stat.S_IMODE(os.stat(tmp_path / "b").st_mode)


def test_unwritable_places_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        atomic_write_text(tmp_path / "no" / "such" / "dir.txt", "x")
    (tmp_path / "d").mkdir()
    with pytest.raises(UsageError, match="a directory; simroll only ever replaces regular files"):
        atomic_write_text(tmp_path / "d", "x", overwrite=True)


@pytest.mark.parametrize("make", ["device", "symlink", "fifo"])
def test_only_a_regular_file_is_ever_replaced_even_with_overwrite(tmp_path, make):
    """Run as root, ``--force`` must not turn /dev/null or a link into a regular file."""
    if make == "device":
        target = "/dev/null"
    elif make == "symlink":
        (tmp_path / "real").write_text("keep")
        target = tmp_path / "link"
        os.symlink(tmp_path / "real", target)
    else:
        target = tmp_path / "fifo"
        os.mkfifo(target)
    before = os.lstat(target)
    with pytest.raises(UsageError, match="simroll only ever replaces regular files"):
        atomic_write_text(target, "x", overwrite=True)
    with pytest.raises(UsageError, match="simroll only ever replaces regular files"):
        check_new_file(target, overwrite=True)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if make == "symlink":
        assert (tmp_path / "real").read_text() == "keep"


def test_the_check_names_the_flag_and_can_allow_missing_parents(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError) as exc:
        check_new_file(tmp_path / "f", flag="--html")
    assert str(exc.value) == f"{tmp_path / 'f'}: --html: file exists; pass --force to overwrite it"
    check_new_file(tmp_path / "f", overwrite=True)
    deep = tmp_path / "a" / "b" / "c.yaml"
    with pytest.raises(UsageError, match="does not exist"):
        check_new_file(deep)
    check_new_file(deep, make_parents=True)  # the writer will create a/ and a/b/
    with pytest.raises(UsageError, match="cannot write: Not a directory"):
        check_new_file(tmp_path / "f" / "below.yaml", make_parents=True)  # a file is no directory


def test_run_interrupted_while_streaming_the_trace_leaves_no_file(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of a run: exit 130, and neither the trace nor a temporary file remains."""
    real = simroll.run.simulate

    def interrupted(scenario, seed, choices, trace):
        for i in range(100):
            trace.emit(0.0, "begin", n=i)
        raise KeyboardInterrupt

    monkeypatch.setattr(simroll.run, "simulate", interrupted)
    trace = tmp_path / "t.jsonl"
    assert main(["run", str(SCENARIOS / "lost_dual_writes.yaml"), "--trace", str(trace)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(simroll.run, "simulate", real)
    assert main(["run", str(SCENARIOS / "lost_dual_writes.yaml"), "--trace", str(trace)]) == 1
    assert os.listdir(tmp_path) == ["t.jsonl"]


def test_inputs_are_regular_files_read_up_to_the_limit(tmp_path):
    """/dev/zero would never end and a FIFO with no writer would hang: both are refused at once."""
    from simroll._io import read_input

    (tmp_path / "s.yaml").write_bytes(b"x" * 10)
    assert read_input(tmp_path / "s.yaml", 10) == b"x" * 10
    with pytest.raises(ValueError, match="more than the limit of 9 bytes"):
        read_input(tmp_path / "s.yaml", 9)
    with pytest.raises(ValueError, match="a device, not a regular file"):
        read_input("/dev/zero", 10)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="a FIFO, not a regular file"):
        read_input(tmp_path / "fifo", 10)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/dev/zero", "/dev/zero: file: a device, not a regular file, expected a scenario file"),
        ("FIFO", "FIFO: file: a FIFO, not a regular file, expected a scenario file"),
    ],
)
def test_run_refuses_special_files_without_reading_them(tmp_path, capsys, path, expected):
    if path == "FIFO":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
        expected = expected.replace("FIFO:", f"{path}:", 1)
    assert main(["run", path]) == 2
    assert expected in capsys.readouterr().err


def test_an_interrupt_inside_fdopen_is_the_interrupt_not_a_bad_descriptor(tmp_path, monkeypatch):
    # a SIGTERM turned KeyboardInterrupt can land inside os.fdopen after its half-built file object
    # closed the descriptor: the cleanup must not fail on the closed fd (seen once in CI as exit 70,
    # "OSError: [Errno 9] Bad file descriptor", instead of the interrupt's 130)
    import os

    import pytest

    import simroll._io as io_mod

    def fdopen_interrupted(fd, *args, **kwargs):
        os.close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(io_mod.os, "fdopen", fdopen_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with io_mod.atomic_open(tmp_path / "t.jsonl"):
            pass
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
