"""DVC's lock and stage-file writes are atomic in this environment (pipeline/dvc_atomic.py): a process
killed in the middle of writing dvc.lock leaves the previous dvc.lock, not a truncated one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipeline import dvc_atomic

KILLED_WRITE = textwrap.dedent("""
    import os, signal, sys
    import dvc.utils.serialize._common as common
    dump = common._dump_data if sys.argv[2] == "patched" else common._dump_data.__wrapped__

    def half_then_killed(data, fobj):
        fobj.write("schema: '2.0'\\nstages:\\n  train:\\n")
        fobj.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the write

    dump(sys.argv[1], {"stages": {}}, dumper=half_then_killed)
""")


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_every_python_of_the_environment_imports_dvc_patched(tmp_path):
    """The .pth file scripts/venv.sh writes is in place, and a fresh interpreter that imports DVC the way
    its CLI does gets the atomic functions."""
    import os
    import sysconfig

    pth = os.path.join(sysconfig.get_paths()["purelib"], dvc_atomic.PTH_NAME)
    with open(pth) as fobj:
        assert fobj.read() == dvc_atomic.PTH_LINE
    out = run_python("-c", "import dvc.cli, dvc.repo, dvc.rwlock, dvc.utils.serialize; "
                           "import pipeline.dvc_atomic as m; print(sorted(m.active().items()))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted((name, True) for name in dvc_atomic.PATCHED))


@pytest.mark.parametrize("kind", ["patched", "dvc's own"])
def test_a_write_killed_halfway_keeps_the_previous_lock(tmp_path, kind):
    lock = tmp_path / "dvc.lock"
    previous = "schema: '2.0'\nstages:\n  prepare:\n    cmd: python -m x\n"
    lock.write_text(previous)
    script = tmp_path / "write.py"
    script.write_text(KILLED_WRITE)
    out = run_python(str(script), str(lock), "patched" if kind == "patched" else "original")
    assert out.returncode == -9
    if kind == "patched":
        assert lock.read_text() == previous
    else:  # what happens without the patch: the truncated lock that no dvc repro can read
        assert lock.read_text() == "schema: '2.0'\nstages:\n  train:\n"


def test_the_rwlock_round_trips_through_the_atomic_writer(tmp_path):
    """DVC's rwlock (read/write locks of a running repro) through the replaced _edit_rwlock: written
    as DVC writes it, read back by DVC's own schema."""
    import json

    import dvc.rwlock as rwlock
    from dvc.fs import localfs

    dvc_atomic.install()
    assert rwlock._edit_rwlock.__onnxbuild_atomic__
    with rwlock.rwlock(str(tmp_path), localfs, "dvc repro", ["a"], ["b"], False):
        held = json.loads((tmp_path / rwlock.RWLOCK_FILE).read_text())
        assert list(held["write"]) == ["b"] and list(held["read"]) == ["a"]
    assert json.loads((tmp_path / rwlock.RWLOCK_FILE).read_text()) == {}  # released, as DVC's own leaves it
    assert sorted(p.name for p in tmp_path.iterdir()) == [rwlock.RWLOCK_FILE, rwlock.RWLOCK_LOCK]


def test_a_symlinked_lock_stays_a_symlink(tmp_path):
    """DVC writes through a symlinked dvc.lock (open(path, 'w')); the atomic write replaces the file it
    points to, not the link."""
    import dvc.utils.serialize._common as common

    dvc_atomic.install()
    real = tmp_path / "shared" / "dvc.lock"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "dvc.lock"
    link.symlink_to(real)
    common._dump_data(str(link), "new\n", dumper=lambda data, fobj: fobj.write(data))
    assert link.is_symlink() and real.read_text() == "new\n"
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["dvc.lock"]


def test_the_pth_line_keeps_interpreter_start_light():
    """The .pth runs at every start of every Python of the environment: installing the import hook
    must not pull in heavy modules (importlib.abc, tempfile and typing cost ~8 ms of a ~30 ms start);
    the patching needs them only once DVC itself is imported."""
    out = run_python("-c", "import sys; print(sorted(m for m in ('importlib.abc', 'tempfile', 'typing') "
                           "if m in sys.modules)); print(sys.modules['pipeline.dvc_atomic'].__name__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "pipeline.dvc_atomic"]


def test_venv_sh_writes_the_pth_quietly():
    """The commands scripts/venv.sh runs to (re)write the .pth succeed with nothing on stderr (run as
    ``-m``, the module the .pth had already imported made runpy warn at every run)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lines = [line.strip() for line in (root / "scripts" / "venv.sh").read_text().splitlines()
             if "dvc_atomic" in line and not line.lstrip().startswith("#")]
    assert len(lines) == 1  # one call, run for a new and for an existing .venv
    for line in lines:
        out = subprocess.run(["bash", "-c", line.replace(".venv/bin/python", sys.executable, 1)],
                             cwd=root, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stderr == "", out.stderr


def test_the_pth_line_is_silent_when_the_project_cannot_be_imported(tmp_path):
    """A checkout that moved (the editable install points nowhere) must not print a traceback at every
    start of the environment's Python: the .pth line does nothing then."""
    import subprocess

    code = f"import sys; sys.modules['pipeline'] = None\n{dvc_atomic.PTH_LINE}print('started')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "started\n" and out.stderr == "", out.stderr
    code = f"{dvc_atomic.PTH_LINE}import dvc.rwlock, pipeline.dvc_atomic as m; print(m.active())"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={"PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert out.stdout.strip() == "{'dvc.rwlock': True}", out.stderr
