"""DVC writes ``dvc.lock``, ``dvc.yaml`` and its ``.dvc/tmp/rwlock`` in place (``open(path, "w")``
then dump): a ``dvc repro`` killed during that write leaves a truncated ``dvc.lock`` that no later
``dvc repro`` reads ("'./dvc.lock' validation failed"), and every result it recorded is lost
(measured: once in 120 random kills; tests/reliability/test_kill.py). This module makes those writes
atomic (pipeline.fsutil.atomic_file: a temporary file, fsynced, renamed over the target) in every Python process of the
project's environment: ``scripts/venv.sh`` installs a one-line ``.pth`` file that calls
:func:`install`, which patches the two DVC modules when (and only when) they are imported.

Tied to the pinned DVC (requirements/constraints.txt): :data:`PATCHED` names what is replaced, and
tests/test_dvc_atomic.py checks that a ``dvc`` process runs the patched functions, so an upgrade
that renames them fails a test instead of silently losing the protection.
"""

from __future__ import annotations

# Imported at every interpreter start (the .pth): nothing heavy at module level (importlib.abc,
# tempfile and typing cost ~8 ms of a ~30 ms start); the patching code imports what it needs.
import os
import sys

PTH_NAME = "onnxbuild-dvc-atomic.pth"  # the file scripts/venv.sh writes into site-packages
# one line (site.py runs .pth lines that start with "import"); a checkout that moved or an environment
# without the project must not print a traceback at every interpreter start: then it does nothing
PTH_LINE = ('import sys; exec("try:\\n    import pipeline.dvc_atomic as _m\\nexcept ImportError:\\n    pass\\n'
            'else:\\n    _m.install()")\n')
PATCHED = {"dvc.utils.serialize._common": "_dump_data", "dvc.rwlock": "_edit_rwlock"}


def _is_local(fs: object) -> bool:
    if fs is None:
        return True
    protocol = getattr(fs, "protocol", None)
    return protocol == "local" or (isinstance(protocol, tuple) and "local" in protocol)


def _replace_atomically(path: str, write) -> None:
    """Call ``write(fobj)`` on a temporary text file, then rename it over ``path``
    (:func:`pipeline.fsutil.atomic_file`, keeping ``path``'s mode). A symlinked ``path`` stays a link:
    the file it points to is replaced, as DVC's ``open(path, "w")`` writes through the link."""
    from pipeline.fsutil import atomic_file

    with atomic_file(os.path.realpath(os.fspath(path)), encoding="utf-8", keep_mode=True) as fobj:
        write(fobj)


def _patch_serialize(module) -> None:
    original = module._dump_data

    def _dump_data(path, data, dumper, fs=None, **dumper_args):
        if not _is_local(fs):
            return original(path, data, dumper, fs=fs, **dumper_args)
        _replace_atomically(path, lambda fobj: dumper(data, fobj, **dumper_args))
        return None

    _dump_data.__wrapped__ = original
    _dump_data.__onnxbuild_atomic__ = True
    module._dump_data = _dump_data


def _patch_rwlock(module) -> None:
    """``_edit_rwlock`` as DVC 3.67 writes it, with the final write made atomic."""
    import json
    from collections import defaultdict
    from contextlib import contextmanager

    from voluptuous import Invalid

    original = module._edit_rwlock

    @contextmanager
    def _edit_rwlock(lock_dir, fs, hardlink):
        if not _is_local(fs):
            with original(lock_dir, fs, hardlink) as lock:
                yield lock
            return
        path = fs.join(lock_dir, module.RWLOCK_FILE)
        guard = module.make_lock(fs.join(lock_dir, module.RWLOCK_LOCK), tmp_dir=lock_dir, hardlink_lock=hardlink)
        with guard:
            try:
                with fs.open(path, encoding="utf-8") as fobj:
                    lock = module.SCHEMA(json.load(fobj))
            except FileNotFoundError:
                lock = module.SCHEMA({})
            except json.JSONDecodeError as exc:
                raise module.RWLockFileCorruptedError(path) from exc
            except Invalid as exc:
                raise module.RWLockFileFormatError(path) from exc
            lock["read"] = defaultdict(list, lock["read"])
            lock["write"] = defaultdict(dict, lock["write"])
            yield lock
            _replace_atomically(path, lambda fobj: json.dump(lock, fobj))

    _edit_rwlock.__wrapped__ = original
    _edit_rwlock.__onnxbuild_atomic__ = True
    module._edit_rwlock = _edit_rwlock


_PATCHERS = {"dvc.utils.serialize._common": _patch_serialize, "dvc.rwlock": _patch_rwlock}
assert set(_PATCHERS) == set(PATCHED)


class _PatchingLoader:  # an importlib Loader (duck-typed: importlib.abc is slow to import)
    def __init__(self, loader, patch) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._patch(module)


class _Finder:  # an importlib MetaPathFinder
    def find_spec(self, fullname, path, target=None):
        patch = _PATCHERS.get(fullname)
        if patch is None:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def install() -> None:
    """Patch the DVC modules when they are imported (and now, if they already are). Idempotent."""
    for name, patch in _PATCHERS.items():
        module = sys.modules.get(name)
        if module is not None and not getattr(getattr(module, PATCHED[name]), "__onnxbuild_atomic__", False):
            patch(module)
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def active() -> dict[str, bool]:
    """``{module: patched?}`` for the DVC modules imported in this process."""
    return {name: getattr(getattr(sys.modules[name], attr, None), "__onnxbuild_atomic__", False)
            for name, attr in PATCHED.items() if name in sys.modules}


def write_pth() -> str:
    """Write (or keep) the ``.pth`` file that runs :func:`install` at every start of this environment's
    Python; returns its path. Called by ``scripts/venv.sh``."""
    import sysconfig

    path = os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)
    try:
        with open(path, encoding="utf-8") as fobj:
            if fobj.read() == PTH_LINE:
                return path
    except FileNotFoundError:
        pass
    _replace_atomically(path, lambda fobj: fobj.write(PTH_LINE))
    return path


if __name__ == "__main__":
    print(write_pth())
