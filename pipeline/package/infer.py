#!/usr/bin/env python3
"""Run this package's model once, with the ONNX Runtime settings it was measured with.

    python infer.py                      # the shipped example inputs (example_inputs.npz), else made-up ones
    python infer.py --inputs my.npz      # your own inputs: one array per model input, by name
    python infer.py --save outputs.npz   # also write the outputs

It first checks every file against SHA256SUMS (a changed or missing file stops it), then builds the
session from session.json (threads, graph optimization level, execution mode, provider and its
options, session config entries) and prints each output's name, shape and dtype.

Needs only Python 3.9+, numpy and onnxruntime (the version in session.json's ``onnxruntime`` is the
one it was measured with). This file is copied into every package by ``onnxbuild package``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
MANIFEST = "SHA256SUMS"
SETTINGS = "session.json"
EXAMPLE = "example_inputs.npz"

# ONNX Runtime's tensor type names -> numpy dtypes (inputs made up from the model's metadata)
DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32, "tensor(uint32)": np.uint32, "tensor(int64)": np.int64, "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(root: Path = HERE) -> int:
    """Check every file listed in SHA256SUMS (``sha256sum -c`` format); exit naming the first bad one."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        sys.exit(f"error: {manifest} is missing: this package cannot be verified")
    listed = set()
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = root / name
        if not path.is_file():
            sys.exit(f"error: {name} is listed in {MANIFEST} but missing from the package")
        if sha256(path) != expected:
            sys.exit(f"error: {name} does not match its SHA-256 in {MANIFEST}: the package was changed")
        listed.add(name)
    # what this script loads must be among the checked files (a truncated manifest checks nothing)
    if SETTINGS not in listed:
        sys.exit(f"error: {SETTINGS} is not listed in {MANIFEST}: this package cannot be verified")
    model = Path(json.loads((root / SETTINGS).read_text())["model"])
    used = {model.as_posix(), SETTINGS, Path(__file__).name}
    used |= {p.relative_to(root).as_posix() for p in (root / model.parent).rglob("*") if p.is_file()}
    if (root / EXAMPLE).is_file():
        used.add(EXAMPLE)
    unlisted = sorted(used - listed)
    if unlisted:
        sys.exit(f"error: {', '.join(unlisted)} not listed in {MANIFEST}: this package cannot be verified")
    return len(listed)


def session(root: Path = HERE) -> ort.InferenceSession:
    """An InferenceSession for the packaged model with the settings of session.json."""
    settings = json.loads((root / SETTINGS).read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads = settings["intra_op_num_threads"]
    so.inter_op_num_threads = settings["inter_op_num_threads"]
    so.execution_mode = getattr(ort.ExecutionMode, settings["execution_mode"])
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings["graph_optimization_level"])
    so.log_severity_level = settings.get("log_severity_level", 3)
    for key, value in settings.get("session_config", {}).items():
        so.add_session_config_entry(key, value)
    providers = [(p["name"], p.get("options") or {}) for p in settings["providers"]]
    available = ort.get_available_providers()
    missing = [name for name, _ in providers if name not in available]
    if missing:
        sys.exit(f"error: this onnxruntime {ort.__version__} lacks {', '.join(missing)} (session.json); "
                 f"installed: {', '.join(available)}")
    return ort.InferenceSession(str(root / settings["model"]), sess_options=so, providers=providers)


def made_up_inputs(sess: ort.InferenceSession, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """One input per model input from its metadata: named (dynamic) dims get ``batch`` (first) or 1;
    floats are standard-normal, integers zero, booleans False."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in sess.get_inputs():
        if arg.type not in DTYPES:
            sys.exit(f"error: input {arg.name!r} has type {arg.type}: pass --inputs with an array for it")
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(arg.shape)]
        dtype = DTYPES[arg.type]
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
    return feeds


def load_inputs(path: Path, sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    """The arrays of an .npz, one per model input by name, cast to the input's dtype."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):
            sys.exit(f"error: {path} is a single array, not an .npz with one array per input (np.savez)")
        with loaded as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:  # missing, not an .npz, or object arrays (never unpickled)
        sys.exit(f"error: cannot read {path} as an .npz of arrays: {str(exc).strip().splitlines()[0]}")
    feeds = {}
    for arg in sess.get_inputs():
        if arg.name not in arrays:
            sys.exit(f"error: {path} has no array {arg.name!r} (model inputs: "
                     f"{', '.join(a.name for a in sess.get_inputs())}; arrays: {', '.join(sorted(arrays))})")
        value = arrays[arg.name]
        feeds[arg.name] = value.astype(DTYPES[arg.type]) if arg.type in DTYPES else value
    return feeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, help=f"an .npz with one array per input (default: {EXAMPLE})")
    parser.add_argument("--save", type=Path, help="write the outputs to this .npz")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of the package's files")
    args = parser.parse_args(argv)

    if not args.no_verify:
        print(f"verified {verify()} files against {MANIFEST}")
    sess = session()
    if args.inputs is not None:
        feeds, source = load_inputs(args.inputs, sess), str(args.inputs)
    elif (HERE / EXAMPLE).is_file():
        feeds, source = load_inputs(HERE / EXAMPLE, sess), EXAMPLE
    else:
        feeds, source = made_up_inputs(sess), "made up from the model's input metadata"
    print(f"providers: {', '.join(sess.get_providers())}")
    for name, value in feeds.items():
        print(f"input  {name}: shape {list(value.shape)} {value.dtype} ({source})")
    try:
        outputs = sess.run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors (wrong shape or type): one line
        sys.exit(f"error: ONNX Runtime refused the inputs ({source}): {str(exc).strip().splitlines()[0]}")
    for arg, value in zip(sess.get_outputs(), outputs):
        value = np.asarray(value)
        print(f"output {arg.name}: shape {list(value.shape)} {value.dtype}")
    if args.save is not None:
        np.savez(args.save, **{arg.name: np.asarray(v) for arg, v in zip(sess.get_outputs(), outputs)})
        print(f"wrote {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
