"""Generated bad inputs for ``onnxbuild compose`` and how to judge the answer to each.

Every input drawn here is wrong on purpose (of a kind the issue lists: unsafe ``_target_`` or paths,
bad names, unbounded numbers, NaN/inf gates, clipped sample counts, unknown provider options,
unavailable providers, YAML syntax errors, duplicate keys, unparsable overrides), so the only right
answer is exit code 2 with ONE line on stderr, no traceback, and params.yaml byte-unchanged.
Used by tests/reliability/test_fuzz.py and scripts/reliability_figures.py.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

BUILD = "builds.tiny_fp32"
MODEL = "models.tiny"
RECIPE = Path("conf/recipe/tiny_fp32.yaml")

_name_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))
# a build name with at least one character outside [A-Za-z0-9_.-]
bad_names = st.builds(
    lambda a, bad, b: f"{a}{bad}{b}",
    st.text(st.sampled_from("abcXYZ019_-."), max_size=4),
    # no "'": the override quotes the name with it (the quote used to be stripped, so "0'" became the valid "0")
    st.sampled_from([" ", "/", "é", "\\", ":", "*", "?", "$", "ü", "→", "#", "!", "&", "|", ";", "~", "%", "😀"]),
    st.text(st.sampled_from("abc019_-"), max_size=4),
)
huge = st.one_of(st.integers(min_value=10**6, max_value=10**30), st.sampled_from(["1e23", "1e300", "9" * 40]))
non_finite = st.sampled_from(["nan", "inf", "-inf", "+inf", "NaN", ".nan", "-.inf"])
unsafe_targets = st.builds(
    lambda mod, fn: f"{mod}.{fn}",
    st.sampled_from(["os", "subprocess", "builtins", "shutil", "socket", "importlib", "ctypes", "evilpkg", "pipelinex",
                     "pickle", "runpy", "code", "sys", "pty", "webbrowser", "urllib.request", "tests.reliability"]),
    st.sampled_from(["system", "run", "exec", "eval", "rmtree", "import_module", "load", "popen", "spawn", "fn"]),
)
outside_paths = st.one_of(
    st.sampled_from(["/etc/passwd", "/root/.ssh/id_rsa", "/proc/self/environ", "~/.bashrc", "/", "/tmp/x.onnx"]),
    st.builds(lambda n, tail: "../" * n + tail, st.integers(1, 6), st.sampled_from(["etc/passwd", "x.onnx", "models"])),
    st.builds(lambda tail: f"models/../../{tail}", st.sampled_from(["x", "etc/shadow"])),
)


@st.composite
def bad_overrides(draw) -> tuple[str, list[str]]:
    """``(kind, overrides)``: one definitely-bad override (sometimes after a harmless one)."""
    kind = draw(st.sampled_from([
        "target", "path", "name", "threads", "runs", "warmup", "dims", "samples", "gate",
        "fidelity_clip", "provider_option", "provider", "unparsable", "unknown_key", "project", "type",
    ]))
    if kind == "target":
        where = draw(st.sampled_from([f"{MODEL}.calibration", f"{MODEL}.reference.dataset"]))
        o = f"{where}={{_target_: {draw(unsafe_targets)}}}"
    elif kind == "path":
        o = f"{MODEL}.{draw(st.sampled_from(['path', 'watch']))}='{draw(outside_paths)}'"
    elif kind == "name":
        name = draw(bad_names)
        o = f"+recipe@builds.'{name}'=tiny_fp32" if draw(st.booleans()) else f"+recipe@builds.{name}=tiny_fp32"
    elif kind == "threads":
        o = f"{BUILD}.target.threads={draw(st.one_of(huge, st.integers(max_value=-1)))}"
    elif kind == "runs":
        o = f"{BUILD}.evaluate.runs={draw(st.one_of(huge, st.integers(-10**9, 9)))}"
    elif kind == "warmup":
        o = f"{BUILD}.evaluate.warmup={draw(st.one_of(huge, st.integers(-10**9, 0)))}"
    elif kind == "dims":
        o = f"{MODEL}.export.dims.batch={draw(st.one_of(huge, st.integers(-10**9, 0)))}"
    elif kind == "samples":
        o = f"{MODEL}.reference.num_samples={draw(st.one_of(huge, st.integers(-10**9, 31)))}"
    elif kind == "gate":
        gate = draw(st.sampled_from(["min_cosine", "max_abs_err", "min_speedup", "max_p50_ms", "max_size_mb"]))
        o = f"{BUILD}.evaluate.gates.{gate}={draw(non_finite)}"
    elif kind == "fidelity_clip":
        o = f"{BUILD}.evaluate.fidelity_samples={draw(st.integers(65, 10**5))}"  # the model holds 64
    elif kind == "provider_option":
        key = draw(st.text(st.sampled_from("abcdefghij_"), min_size=1, max_size=12))
        o = f"+{BUILD}.target.provider_options.{key}={draw(st.integers(0, 9))}"
    elif kind == "provider":
        o = f"{BUILD}.target.name={draw(st.sampled_from(['cuda', 'tensorrt', 'rocm', 'openvino', 'dnnl', 'coreml', 'qnn']))}"
    elif kind == "unparsable":
        o = draw(st.sampled_from([
            f"{BUILD}.target.threads=[1", f"{BUILD}.target.threads={{", "=1", "+=", "~", "a..b=1", f"{BUILD}..x=1",
            "builds.tiny_fp32.target.threads=${oops", "++", "@=1", "x=(", f"{BUILD}.evaluate.runs='unterminated",
        ]))
    elif kind == "unknown_key":
        o = f"{BUILD}.{draw(st.sampled_from(['targt', 'evaluat', 'passes.0.nme', 'quantisation']))}=1"
    elif kind == "project":
        o = draw(st.sampled_from(["+project.allow_targets=[os]", "project.allow_targets=[pipeline,os]",
                                  "project.allow_paths=[/etc]", "~project"]))
    else:  # type: a value of the wrong kind
        o = draw(st.sampled_from([
            f"{BUILD}.target.threads=abc", f"{BUILD}.evaluate.runs=[1,2]", f"{MODEL}.export.dims={{batch: x}}",
            f"{BUILD}.evaluate.gates.min_cosine=high", f"{MODEL}.inputs=7", f"{BUILD}.model=[]",
        ]))
    prefix = [f"{BUILD}.target.threads=1"] if draw(st.booleans()) else []
    return kind, [*prefix, o]


_GOOD_RECIPE = "defaults:\n  - /build@_here_: default\n  - _self_\n\nmodel: tiny\n"


@st.composite
def bad_recipes(draw) -> tuple[str, str | bytes]:
    """``(kind, text)``: a recipe file (conf/recipe/tiny_fp32.yaml) that is wrong."""
    kind = draw(st.sampled_from(["syntax", "duplicate", "indent", "tab", "bytes", "value", "target", "unknown"]))
    junk = draw(st.text(st.sampled_from("abc :-[]{}'\"#&*!|>%@`,"), max_size=12))
    if kind == "syntax":
        opener = draw(st.sampled_from(["[", "{", "'", '"', "[a, {b: "]))
        # nothing that closes the opener: junk "'" after the opener "'" made the valid YAML `runs: ''`
        closers = "]}" + (opener if opener in "'\"" else "")
        text = _GOOD_RECIPE + f"evaluate:\n  runs: {opener}{junk.translate({ord(c): None for c in closers})}\n"
    elif kind == "duplicate":
        key = draw(st.sampled_from(["model", "evaluate", "defaults", "target"]))
        text = _GOOD_RECIPE + f"{key}: {{}}\n" if key != "model" else _GOOD_RECIPE + "model: tiny\n"
        if key in ("evaluate", "target"):
            text += f"{key}: {{}}\n"
    elif kind == "indent":
        text = _GOOD_RECIPE + "evaluate:\n  runs: 10\n" + " " * draw(st.integers(3, 7)) + "warmup: 1\n"
    elif kind == "tab":
        text = _GOOD_RECIPE + "evaluate:\n\truns: 10\n"
    elif kind == "bytes":
        return kind, _GOOD_RECIPE.encode() + bytes(draw(st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=6)))
    elif kind == "value":
        field, value = draw(st.sampled_from([
            ("evaluate:\n  runs", draw(huge)), ("evaluate:\n  warmup", 0), ("target:\n  threads", 10**7),
            ("evaluate:\n  gates:\n    min_cosine", ".nan"), ("evaluate:\n  fidelity_samples", 1000),
            ("target:\n  provider_options:\n    bogus", 1), ("target:\n  name", "cuda"),
        ]))
        text = _GOOD_RECIPE + f"{field}: {value}\n"
    elif kind == "target":
        text = _GOOD_RECIPE + f"evaluate:\n  metrics:\n    - {{_target_: {draw(unsafe_targets)}, provides: [x]}}\n"
    else:
        text = _GOOD_RECIPE + f"{draw(st.sampled_from(['modle', 'evaluation', 'quantisation', 'pases']))}: 1\n"
    return kind, text


@dataclass
class Outcome:
    code: int | None
    err: str
    traceback: bool  # an exception escaped main(), or main's "failed unexpectedly" safety net fired
    params_changed: bool

    @property
    def one_line(self) -> bool:
        return self.code == 2 and len(self.err.strip().splitlines()) == 1 and not self.traceback


def run_compose(root: Path, overrides: list[str]) -> Outcome:
    """``onnxbuild compose OVERRIDES`` in-process in ``root`` (the current folder)."""
    from hydra.core.global_hydra import GlobalHydra

    from pipeline.compose import main

    params = root / "params.yaml"
    before = params.read_bytes()
    err = io.StringIO()
    escaped = False
    code: int | None = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(overrides))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - counted: a traceback the user would see
            escaped = True
        finally:
            GlobalHydra.instance().clear()
    text = err.getvalue()
    return Outcome(code, text, escaped or "failed unexpectedly" in text or "Traceback" in text,
                   params.read_bytes() != before)


def run_recipe(root: Path, content: str | bytes) -> Outcome:
    """Compose with ``conf/recipe/tiny_fp32.yaml`` replaced by ``content`` (restored afterwards)."""
    recipe = root / RECIPE
    good = recipe.read_bytes()
    try:
        recipe.write_bytes(content if isinstance(content, bytes) else content.encode())
        return run_compose(root, [])
    finally:
        recipe.write_bytes(good)
