"""online/atomic.py: a failed write leaves the old file intact and no temporary file behind."""
import os

import pytest

from online.atomic import atomic_write, atomic_write_text


def test_replaces_the_whole_file_and_keeps_umask_mode(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_write_that_dies_half_way_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old\n")

    def half(tmp):
        with open(tmp, "w") as fh:
            fh.write("half of the new con")
        raise KeyboardInterrupt  # a job killed mid-write (BaseException, not Exception)

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["f.txt"]
