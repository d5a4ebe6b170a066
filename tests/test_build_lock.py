"""The extensions' build lock (``graphsafe._build``): a build interrupted mid-way leaves torch's ``lock``
file behind, which would make every later load of that extension wait forever; graphsafe removes it
when no live build holds the directory, and waits for one that does."""
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

from graphsafe import _build

pytestmark = pytest.mark.skipif(_build.fcntl is None, reason="the build lock uses fcntl (POSIX)")


def test_a_lock_left_by_an_interrupted_build_is_removed_with_a_warning(tmp_path):
    (tmp_path / _build.TORCH_BATON).write_text("")
    with pytest.warns(RuntimeWarning, match="interrupted build"):
        with _build.build_lock(tmp_path):
            assert not (tmp_path / _build.TORCH_BATON).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left over: no warning the second time
        with _build.build_lock(tmp_path):
            pass


def test_a_live_build_is_waited_for_and_its_lock_kept(tmp_path):
    """Another process holding the directory's lock (a build in progress, with torch's ``lock`` file
    present) is waited for, and its ``lock`` file is not touched while it runs; once it has finished
    (and torch removed its file), this process builds."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, pathlib, sys, time
        d = pathlib.Path({str(tmp_path)!r})
        f = open(d / {_build.OUR_LOCK!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        (d / {_build.TORCH_BATON!r}).write_text("")
        print("held", flush=True)
        sys.stdin.readline()
        (d / {_build.TORCH_BATON!r}).unlink()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    entered = threading.Event()
    errors = []

    def build():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the holder removes its own file: nothing stale here
                with _build.build_lock(tmp_path):
                    entered.set()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
    try:
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
    finally:
        holder.kill()
        holder.wait()
