"""Atomic file and directory writes: never a half-written artifact where a result belongs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory (in the project's staging folder, or beside ``target``); on success
    it replaces ``target`` whole.

    On failure the temporary directory is removed and ``target`` (an earlier result) is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging, label = _staging(target)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(label), dir=staging))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; an artifact folder gets the usual mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        with uninterrupted():  # a SIGTERM here (the stage's dvc died) would leave .NAME.old-PID behind
            old = None
            if target.exists():
                old = staging / f".{label}.old-{os.getpid()}"
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:  # a SIGTERM just before the block began, or a failed rename
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the swap was done
        raise


_critical = 0  # depth of uninterrupted() blocks in progress
_pending: list[int] = []  # exit codes of the termination requests they deferred


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Defer a termination request (:func:`request_exit`, the stage's SIGTERM handler) until the block
    ends: the swap of a finished result into place and the removal of the one it replaced run whole.
    SIGKILL cannot be deferred; what it leaves, :func:`clean_stale` removes.

    Only the main thread's blocks defer: signal handlers run there, and a SystemExit raised at the
    end of another thread's block would end that thread, not the process (the request lost). A
    non-daemon thread's swap still completes: the interpreter waits for it before it exits."""
    global _critical
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
        if _critical == 0 and _pending:  # also when the block raised: the exit is not lost
            code = _pending[0]
            _pending.clear()  # one exit for any number of requests
            raise SystemExit(code)


def request_exit(code: int) -> None:
    """End the process with ``code`` now, or when the current :func:`uninterrupted` block ends."""
    if _critical:
        _pending.append(code)
        return
    raise SystemExit(code)


# Temporaries of outputs inside the project (the working directory: DVC runs every stage at the
# project root) are made here, not beside the output: a stage killed with SIGKILL leaves its
# half-written copy outside every output folder (git and DVC ignore this one), and the next stage
# removes it. Beside the output only when the output is elsewhere or on another file system (a rename
# must not cross devices).
STAGING = ".onnxbuild-tmp"


def _staging(target: Path) -> tuple[Path, str]:
    """``(folder, label)`` for ``target``'s temporaries: ``.LABEL.tmp-PID-*`` and ``.LABEL.old-PID`` in
    ``folder``. In the project's staging folder the label is ``target``'s path from the project root,
    quoted (``artifacts%2Fbuilds%2Fb%2Fmodel``), so that :func:`clean_stale` knows where a copy belongs;
    beside ``target`` it is ``target``'s name."""
    from urllib.parse import quote

    try:
        root = Path.cwd()
        rel = target.parent.resolve().relative_to(root.resolve()) / target.name
    except (OSError, ValueError):
        return target.parent, target.name
    if rel.parts[0] == STAGING:
        return target.parent, target.name
    staging = root / STAGING
    try:
        staging.mkdir(exist_ok=True)
        if os.stat(staging).st_dev != os.stat(target.parent).st_dev:
            return target.parent, target.name
    except OSError:
        return target.parent, target.name
    return staging, quote(rel.as_posix(), safe="")


def _tmp_prefix(label: str) -> str:
    """``.LABEL.tmp-PID-``: the pid tells :func:`clean_stale` whether the writer is still alive."""
    return f".{label}.tmp-{os.getpid()}-"


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?:(?P<pid>\d+)(?:-|$))?")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from before a re-exec, or a bug: nothing of ours is in flight yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left: every ``.LABEL.tmp-*`` / ``.LABEL.old-*`` in the project's
    staging folder and beside ``target`` (``target``'s and its siblings': another stage's leftover
    would otherwise stay until that stage reruns, which DVC skips when its result is intact), unless
    the process writing it is still alive; returns what was removed. An ``.old-`` copy whose output
    is missing (killed between the two renames) is put back instead: the earlier result returns."""
    from urllib.parse import unquote

    target = Path(target)
    removed: list[Path] = []
    places = [(target.parent, lambda name: target.parent / name)]
    with contextlib.suppress(OSError):
        root = Path.cwd()
        if (root / STAGING).is_dir():
            places.append((root / STAGING, lambda name: root / unquote(name)))
    for folder, output_of in places:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for path in sorted(entries, key=lambda p: ".old-" not in p.name):  # .old- first
            m = _LEFTOVER.match(path.name)
            if m is None:
                continue
            if m.group("pid") and _alive(int(m.group("pid"))):
                continue
            if ".old-" in path.name:
                output = output_of(m.group("name"))
                if not output.exists() and not output.is_symlink():
                    if output.parent.is_dir():
                        os.replace(path, output)  # the earlier result comes back
                    continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(
    target: str | os.PathLike, mode: str = "w", *, encoding: str | None = None, keep_mode: bool = False
) -> Iterator[Any]:
    """Open a temporary file (in the project's staging folder, or beside ``target``); rename it over
    ``target`` only when the block succeeds. ``keep_mode``: the new file gets the permission bits of
    the ``target`` it replaces (else the usual mode for a new file)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    perms = 0o666 & ~_umask()  # mkstemp makes 0600
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            perms = target.stat().st_mode & 0o7777
    staging, label = _staging(target)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(label), dir=staging)
    try:
        os.chmod(tmp, perms)
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_file(target) as fh:
        fh.write(text)


def write_json(target: str | os.PathLike, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def without_timings(data: Any) -> Any:
    """``data`` without wall-clock fields (keys ``seconds`` or ``*_seconds``), recursively.

    Files inside an artifact folder must be a function of the recipe, or every rebuild gives the
    folder a new DVC hash; timings go to the log and to metrics files instead."""
    if isinstance(data, dict):
        return {
            k: without_timings(v)
            for k, v in data.items()
            if not (isinstance(k, str) and (k == "seconds" or k.endswith("_seconds")))
        }
    if isinstance(data, (list, tuple)):
        return [without_timings(v) for v in data]
    return data


def write_artifact_json(target: str | os.PathLike, data: Any) -> None:
    """:func:`write_json` for files inside artifact folders: deterministic, without timings."""
    write_json(target, without_timings(data))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays without importing numpy here
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
