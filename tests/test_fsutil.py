import json
import shutil
from pathlib import Path

import pytest

from pipeline.fsutil import atomic_dir, atomic_file, write_json


def test_atomic_dir_replaces_target_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # not visible until the block succeeds
    assert (target / "new.txt").read_text() == "new"
    assert not (target / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dirs left


def test_atomic_dir_keeps_earlier_result_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.onnx").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "model.onnx").write_text("half")
            raise RuntimeError("boom")
    assert (target / "model.onnx").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "m.json"
    with pytest.raises(ValueError):
        with atomic_file(target) as fh:
            fh.write("{")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_write_json_is_sorted_and_handles_numpy(tmp_path):
    import numpy as np

    write_json(tmp_path / "a.json", {"b": np.float32(1.5), "a": np.arange(2)})
    text = (tmp_path / "a.json").read_text()
    assert text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [0, 1], "b": 1.5}


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        write_json(tmp_path / "m.json", {})
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644


def test_artifact_json_drops_timings(tmp_path):
    from pipeline.fsutil import write_artifact_json

    data = {"seconds": 1.2, "passes": [{"name": "a", "seconds": 0.1, "quantize_seconds": 2}], "nodes": 3}
    write_artifact_json(tmp_path / "a.json", data)
    assert json.loads((tmp_path / "a.json").read_text()) == {"passes": [{"name": "a"}], "nodes": 3}
    assert data["seconds"] == 1.2  # the caller's data is untouched


# --- leftovers of killed writers -------------------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_removes_what_dead_writers_left_and_keeps_live_ones(tmp_path):
    from pipeline.fsutil import atomic_dir, clean_stale

    target = tmp_path / "export"
    dead = _dead_pid()
    (tmp_path / f".export.tmp-{dead}-abc").mkdir()
    (tmp_path / f".export.tmp-{dead}-abc" / "model.onnx").write_bytes(b"half")
    (tmp_path / ".export.tmp-xyz123").mkdir()  # the old naming, without a pid: nobody can own it
    (tmp_path / f".export.json.tmp-{dead}-q").write_text("{")  # a file, and another target's
    live = tmp_path / f".export.tmp-{os.getppid()}-live"  # a live writer (our parent) keeps its folder
    live.mkdir()
    removed = clean_stale(target)
    # a sibling's leftover goes too: its own stage may never rerun (DVC skips it when its result is intact)
    assert sorted(p.name for p in removed) == sorted(
        [f".export.tmp-{dead}-abc", ".export.tmp-xyz123", f".export.json.tmp-{dead}-q"])
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
    with atomic_dir(target) as tmp:  # new temporaries carry our pid
        assert tmp.name.startswith(f".export.tmp-{os.getpid()}-")


def test_clean_stale_restores_the_earlier_result_when_killed_between_the_renames(tmp_path):
    from pipeline.fsutil import clean_stale

    old = tmp_path / f".model.old-{_dead_pid()}"
    old.mkdir()
    (old / "model.onnx").write_bytes(b"earlier result")
    (tmp_path / f".model.tmp-{_dead_pid()}-x").mkdir()
    clean_stale(tmp_path / "model")
    assert (tmp_path / "model" / "model.onnx").read_bytes() == b"earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_clean_stale_removes_a_siblings_old_copy_and_puts_back_a_missing_result(tmp_path):
    """A kill after the swap but before the old copy was removed leaves .passes.old-PID beside an
    intact passes/ (measured: once in 120 kills); the next stage writing into that folder removes
    it. A sibling's .old- whose result is missing is put back: the earlier result returns."""
    from pipeline.fsutil import clean_stale

    dead = _dead_pid()
    (tmp_path / "passes").mkdir()
    (tmp_path / f".passes.old-{dead}").mkdir()
    (tmp_path / f".model.old-{dead}").mkdir()  # model/ missing: killed between the two renames
    (tmp_path / f".model.old-{dead}" / "model.onnx").write_bytes(b"earlier")
    removed = clean_stale(tmp_path / "evaluate.json")
    assert [p.name for p in removed] == [f".passes.old-{dead}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "passes"]
    assert (tmp_path / "model" / "model.onnx").read_bytes() == b"earlier"


def test_outputs_in_the_project_get_their_temporaries_in_the_staging_folder(tmp_path, monkeypatch):
    """A stage killed with SIGKILL leaves its half-written copy in .onnxbuild-tmp/, never in an output
    folder (the kill test found .passes.tmp-PID-* left in artifacts/ when no later stage ran there);
    the next stage of any build removes it, and puts back a replaced result whose swap was cut short."""
    from pipeline import fsutil

    monkeypatch.chdir(tmp_path)
    target = Path("artifacts/builds/b/passes")
    seen = []
    with fsutil.atomic_dir(target) as tmp:
        seen.append(tmp)
        (tmp / "model.onnx").write_bytes(b"new")
    assert seen[0].parent == tmp_path / fsutil.STAGING
    assert seen[0].name.startswith(f".artifacts%2Fbuilds%2Fb%2Fpasses.tmp-{os.getpid()}-")
    with fsutil.atomic_file("metrics/builds/b.json") as fh:
        assert [p.name[:30] for p in (tmp_path / fsutil.STAGING).iterdir()] == [".metrics%2Fbuilds%2Fb.json.tmp"]
        fh.write("{}")
    assert sorted(p.name for p in (tmp_path / "artifacts/builds/b").iterdir()) == ["passes"]
    assert list((tmp_path / fsutil.STAGING).iterdir()) == []

    dead = _dead_pid()
    staging = tmp_path / fsutil.STAGING
    (staging / f".artifacts%2Fbuilds%2Fb%2Fmodel.tmp-{dead}-x").mkdir()  # killed while writing
    old = staging / f".artifacts%2Fbuilds%2Fb%2Fpasses.old-{dead}"  # killed between the renames
    old.mkdir()
    (old / "model.onnx").write_bytes(b"earlier")
    shutil.rmtree(tmp_path / "artifacts/builds/b/passes")
    live = staging / f".metrics%2Fbuilds%2Fc.json.tmp-{os.getppid()}-y"  # a live writer's
    live.write_text("{")
    removed = fsutil.clean_stale("metrics/builds/other.json")  # any stage's start
    assert [p.name for p in removed] == [f".artifacts%2Fbuilds%2Fb%2Fmodel.tmp-{dead}-x"]
    assert (tmp_path / "artifacts/builds/b/passes/model.onnx").read_bytes() == b"earlier"
    assert list(staging.iterdir()) == [live]


def test_outputs_elsewhere_keep_their_temporaries_beside_them(tmp_path, monkeypatch):
    from pipeline import fsutil

    project, outside = tmp_path / "proj", tmp_path / "out"
    project.mkdir()
    monkeypatch.chdir(project)
    with fsutil.atomic_dir(outside / "pkg") as tmp:
        assert tmp.parent == outside and tmp.name.startswith(".pkg.tmp-")
    assert not (project / fsutil.STAGING).exists()


def test_a_termination_request_during_the_swap_waits_for_it(tmp_path):
    """The stage's SIGTERM (its dvc died) arriving while atomic_dir swaps the result in: the swap
    and the removal of the replaced result finish, then the process exits."""
    from pipeline import fsutil

    target = tmp_path / "out"
    target.mkdir()
    (target / "f").write_text("earlier")
    real_replace = os.replace
    calls = []

    def replace_then_signal(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:  # between the two renames: the worst moment
            fsutil.request_exit(143)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fsutil.os, "replace", replace_then_signal)
        with pytest.raises(SystemExit) as exc:
            with fsutil.atomic_dir(target) as tmp:
                (tmp / "f").write_text("new")
    assert exc.value.code == 143
    assert (target / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(SystemExit):  # outside a swap it ends the process at once
        fsutil.request_exit(143)


@pytest.fixture
def fresh_exit_state():
    from pipeline import fsutil

    yield fsutil
    fsutil._critical = 0
    fsutil._pending.clear()


def test_a_termination_request_is_not_lost_when_the_block_fails(fresh_exit_state):
    """A SIGTERM deferred by a block that then raises (a rename failing, say) still ends the process
    when the block ends; it is not carried, unseen, to some later block."""
    fsutil = fresh_exit_state
    with pytest.raises(SystemExit) as exc:
        with fsutil.uninterrupted():
            fsutil.request_exit(143)
            raise OSError("rename failed")
    assert exc.value.code == 143
    assert isinstance(exc.value.__context__, OSError)  # the failure stays visible in the traceback
    with fsutil.uninterrupted():  # nothing left pending
        pass


def test_two_termination_requests_end_the_process_once(fresh_exit_state):
    """A second SIGTERM during the same block: one SystemExit, and no stale request that a later
    block (after a caller handled the first) would raise after its work is done."""
    fsutil = fresh_exit_state
    with pytest.raises(SystemExit):
        with fsutil.uninterrupted():
            fsutil.request_exit(143)
            fsutil.request_exit(143)
    with fsutil.uninterrupted():
        pass


def test_a_termination_just_before_the_swap_leaves_no_temporary(tmp_path, fresh_exit_state):
    """The SIGTERM arriving after the block's work but before the swap's uninterrupted() began (a
    few bytecodes): the finished temporary copy is removed, the earlier result stays."""
    import contextlib

    fsutil = fresh_exit_state
    target = tmp_path / "out"
    target.mkdir()
    (target / "f").write_text("earlier")

    @contextlib.contextmanager
    def terminated_on_entry():
        raise SystemExit(143)
        yield  # pragma: no cover

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fsutil, "uninterrupted", terminated_on_entry)
        with pytest.raises(SystemExit):
            with fsutil.atomic_dir(target) as tmp:
                (tmp / "f").write_text("new")
    assert (target / "f").read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_worker_threads_swap_does_not_swallow_the_termination(fresh_exit_state):
    """A SIGTERM (handled in the main thread) while a worker thread is in an uninterrupted block ends
    the main thread at once; it was deferred to the worker's block end, where the SystemExit ended
    only the worker and the process went on."""
    import threading

    fsutil = fresh_exit_state
    inside, release = threading.Event(), threading.Event()

    def worker():
        with fsutil.uninterrupted():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(SystemExit):
            fsutil.request_exit(143)
    finally:
        release.set()
        thread.join(10)
    assert not fsutil._pending
