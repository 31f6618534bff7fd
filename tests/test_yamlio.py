"""YAML read strictly: syntax errors and duplicate keys are one line with the file and line."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.yamlio import load_yaml_file, load_yaml_text


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\nb: [1, 2\n", 3, "YAML syntax error"),
        ("a: 1\nb:\n  c: 1\n   d: 2\n", 4, "YAML syntax error"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first at line 1)"),
        ("a:\n  x: 1\n  y: 2\n  x: 3\n", 4, "duplicate key 'x' (first at line 2)"),
        ("a: 'unclosed\n", 2, "YAML syntax error"),
        ("- a\nb: 1\n", 2, "YAML syntax error"),
    ],
)
def test_bad_yaml_is_one_line_with_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}: "), msg
    assert words in msg


def test_good_yaml_loads_like_safe_load():
    assert load_yaml_text("a: 1\nb: [x, y]\nc: {d: null}\n") == {"a": 1, "b": ["x", "y"], "c": {"d": None}}


def test_unreadable_files_are_one_line(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml_file(tmp_path / "bin.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml_file(tmp_path / "missing.yaml")
