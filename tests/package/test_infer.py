"""infer.py's own checks on bad inputs (one line each, no traceback); the fresh-process runs of a real
package are in test_package.py."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.package import infer


@pytest.mark.parametrize("make, expected", [
    (lambda p: None, "cannot read .* No such file"),
    (lambda p: p.write_text("not an npz"), "cannot read .* as an .npz of arrays"),
    (lambda p: np.save(p, np.zeros(3)), "is a single array, not an .npz"),
    (lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object)), "Object arrays cannot be loaded"),
])
def test_bad_input_files_are_one_line(tmp_path, make, expected):
    path = tmp_path / "inputs.npz"
    make(path)
    if not path.exists() and (tmp_path / "inputs.npz.npy").exists():
        (tmp_path / "inputs.npz.npy").rename(path)
    with pytest.raises(SystemExit, match=expected) as exc:
        infer.load_inputs(path, sess=None)
    assert "\n" not in str(exc.value.code)
