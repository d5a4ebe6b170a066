"""The extensions' build lock (``graphsafe._build``): a build killed mid-way leaves torch's ``lock`` file
behind, which would make every later load of that extension wait forever; graphsafe removes it when no
live build holds the directory, waits for one that does, and says so where the filesystem has no locks."""
import errno
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

from graphsafe import _build

pytestmark = pytest.mark.skipif(_build.fcntl is None, reason="the build lock uses fcntl (POSIX)")


def test_a_lock_left_by_a_killed_build_is_removed_with_a_warning(tmp_path):
    (tmp_path / _build.TORCH_BATON).write_text("")
    with pytest.warns(RuntimeWarning, match="was killed"):
        with _build.build_lock(tmp_path):
            assert not (tmp_path / _build.TORCH_BATON).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left over: no warning the second time
        with _build.build_lock(tmp_path):
            pass


def test_a_live_build_is_waited_for_and_its_lock_kept(tmp_path):
    """Another process holding the directory's lock (a build in progress, with torch's ``lock`` file
    present) is waited for, and its ``lock`` file is not touched while it runs; once it has finished
    (and torch removed its file), this process builds, with nothing to remove."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, pathlib, sys
        d = pathlib.Path({str(tmp_path)!r})
        f = open(d / {_build.OUR_LOCK!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        (d / {_build.TORCH_BATON!r}).write_text("")
        print("held", flush=True)
        sys.stdin.readline()
        (d / {_build.TORCH_BATON!r}).unlink()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    entered, errors = threading.Event(), []

    def build():
        try:
            with _build.build_lock(tmp_path):
                entered.set()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert holder.stdout.readline().strip() == "held"
            thread = threading.Thread(target=build)
            thread.start()
            assert not entered.wait(1.0)  # waiting on the live build
            assert (tmp_path / _build.TORCH_BATON).exists()  # whose file is left alone
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=60) == 0
            thread.join(timeout=60)
        assert entered.is_set() and not errors, errors
        assert not [w for w in caught if "killed" in str(w.message)]  # the holder removed its own file
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_within_a_thread(tmp_path):
    """A load that, while building, loads from the same directory again does not wait on itself."""
    done = threading.Event()

    def nested():
        with _build.build_lock(tmp_path), _build.build_lock(tmp_path):
            done.set()
    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert done.is_set()
    assert not getattr(_build._held, "dirs", set())


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_a_filesystem_without_flock_builds_with_a_warning(tmp_path, monkeypatch, code):
    """Where flock is refused (NFS without locks, some FUSE mounts), the build goes on without the lock
    and a stale ``lock`` file is left for torch, with a warning; any other error is raised."""
    def refuse(f, op):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(_build.fcntl, "flock", refuse)
    (tmp_path / _build.TORCH_BATON).write_text("")
    with pytest.warns(RuntimeWarning, match="without flock"):
        with _build.build_lock(tmp_path):
            assert (tmp_path / _build.TORCH_BATON).exists()

    def fail(f, op):
        raise OSError(errno.EACCES, "denied")
    monkeypatch.setattr(_build.fcntl, "flock", fail)
    with pytest.raises(OSError, match="denied"):
        with _build.build_lock(tmp_path):
            pass


def test_load_extension_builds_holding_the_lock(tmp_path, monkeypatch):
    """``load_extension`` calls torch's builder inside the directory's lock, after removing a stale file."""
    torch = pytest.importorskip("torch")
    from torch.utils import cpp_extension
    seen = {}

    def fake_load(name, sources, extra_cuda_cflags, build_directory, verbose):
        seen["held"] = os.path.realpath(build_directory) in _build._held.dirs
        seen["baton"] = os.path.exists(os.path.join(build_directory, _build.TORCH_BATON))
        return "module"
    monkeypatch.setenv("GRAPHSAFE_BUILD_DIR", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/usr/local/cuda")
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / _build.TORCH_BATON).write_text("")
    with pytest.warns(RuntimeWarning, match="was killed"):
        assert _build.load_extension("ext", [tmp_path / "a.cu"]) == "module"
    assert seen == {"held": True, "baton": False}
