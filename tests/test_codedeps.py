from __future__ import annotations

from pathlib import Path

from pipeline.codedeps import closure, imported_modules


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_follows_function_level_imports_strings_and_parent_packages(tmp_path):
    root = _tree(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/stages/__init__.py": "",
        "pipeline/stages/run.py": "def main():\n    from pipeline.lib import helper\n    return helper()\n",
        "pipeline/lib.py": "REGISTRY = {'a': 'pipeline.impl.a'}\ndef helper():\n    return 1\n",
        "pipeline/impl/__init__.py": "",
        "pipeline/impl/a.py": "import os\n",
        "pipeline/unused.py": "",
    })
    files = {str(p) for p in closure(root, "pipeline.stages.run", validation_only={})}
    assert files == {
        "pipeline/__init__.py", "pipeline/stages/__init__.py", "pipeline/stages/run.py", "pipeline/lib.py",
        "pipeline/impl/__init__.py", "pipeline/impl/a.py",
    }


def test_validation_only_edges_are_not_followed(tmp_path):
    root = _tree(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/schema.py": "def check():\n    from pipeline.passes import PASSES\n",
        "pipeline/passes/__init__.py": "",
        "pipeline/stage.py": "import pipeline.schema\n",
    })
    full = closure(root, "pipeline.stage", validation_only={})
    trimmed = closure(root, "pipeline.stage", validation_only={"pipeline/schema.py": ("pipeline/passes/",)})
    assert Path("pipeline/passes/__init__.py") in full
    assert Path("pipeline/passes/__init__.py") not in trimmed


def test_imported_modules_ignores_other_packages(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import numpy\nfrom pipeline.a import b\nX = 'pipeline.c'\nY = 'not pipeline.d'\n")
    assert imported_modules(path) == {"pipeline.a", "pipeline.a.b", "pipeline.c"}
