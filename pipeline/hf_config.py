"""What a Hugging Face transformers model folder says about itself: the ``framework: transformers``
model spec expanded from its ``config.json`` (:func:`expand`, run when the model is validated).

Torch-free and transformers-free (it reads one JSON file), because every stage validates params.yaml.
The source that builds such a model is :mod:`pipeline.sources.transformers_source`; what is derived is
described there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

CONFIG_FILE = "config.json"
SEQ_LEN = 128
FACTORY = "pipeline.models.hf_transformers.from_folder"
# head -> (transformers Auto class, output attribute)
HEADS = {
    "base": ("AutoModel", "last_hidden_state"),
    "sequence_classification": ("AutoModelForSequenceClassification", "logits"),
    "token_classification": ("AutoModelForTokenClassification", "logits"),
}
_ARCH_HEADS = {"ForSequenceClassification": "sequence_classification", "ForTokenClassification": "token_classification"}
# model types whose forward takes no token_type_ids (or that have a single token type)
_NO_TOKEN_TYPES = ("distilbert", "roberta", "xlm-roberta", "camembert", "bart", "gpt2", "t5", "deberta-v2")


def model_dir(path: str, key: str = "path") -> Path:
    """The model folder ``path`` names: ``pkg://<package>/<folder>`` inside an installed package, or
    a plain folder. It must hold ``config.json``."""
    from pipeline.models import packaged

    if packaged.is_packaged(path):
        package, rel = packaged.split(path, key)
        folder = packaged.package_dir(package, key).joinpath(*rel.parts)
    else:
        folder = Path(path).expanduser()
    if not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"'{path}' ({folder}) is not a transformers model folder: no {CONFIG_FILE}", key=key)
    return folder


def read_config(path: str, key: str = "path") -> tuple[Path, dict[str, Any]]:
    folder = model_dir(path, key)
    try:
        return folder, json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {folder / CONFIG_FILE}: {exc}", key=key) from None


def takes_token_type_ids(config: dict[str, Any]) -> bool:
    """Whether a model with this ``config.json`` takes ``token_type_ids`` as an input."""
    if config.get("model_type") in _NO_TOKEN_TYPES:
        return False
    return int(config.get("type_vocab_size") or 0) > 1


def head_of(config: dict[str, Any]) -> str:
    for arch in config.get("architectures") or []:
        for suffix, head in _ARCH_HEADS.items():
            if arch.endswith(suffix):
                return head
    return "base"


def task_of(head: str) -> tuple[str, str, dict[str, Any]]:
    """``(task, output, fidelity)`` of a head."""
    if head == "base":
        return "embedding", "last_hidden_state", {"output": "last_hidden_state", "pooling": "mean",
                                                  "mask_input": "attention_mask"}
    return "classification", "logits", {}


def seq_len(config: dict[str, Any]) -> int:
    return min(SEQ_LEN, int(config.get("max_position_embeddings") or SEQ_LEN))


def derived_inputs(config: dict[str, Any]) -> list[dict[str, Any]]:
    vocab = int(config.get("vocab_size") or 30522)
    inputs: list[dict[str, Any]] = [
        {"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"], "range": [0, vocab]},
        {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "seq"], "range": [0, 2]},
    ]
    if takes_token_type_ids(config):
        inputs.append({"name": "token_type_ids", "dtype": "int64", "shape": ["batch", "seq"], "range": [0, 0]})
    return inputs


def sentences(path: str, folder: Path, split: str, num_samples: int, seq: int) -> dict[str, Any] | None:
    """Real sentences tokenized with the folder's tokenizer.json (None when it has none)."""
    if not (folder / "tokenizer.json").is_file():
        return None
    return {"_target_": "pipeline.data.sentences.load", "split": split, "num_samples": num_samples,
            "seq_len": seq, "tokenizer": f"{path.rstrip('/')}/tokenizer.json"}


def expand(data: Any) -> Any:
    """A ``framework: transformers`` model's raw spec with what its folder says filled in (keys the
    spec leaves out or null). Anything else is returned unchanged."""
    if not isinstance(data, dict) or data.get("framework") != "transformers" or not isinstance(data.get("path"), str):
        return data
    path = data["path"]
    folder, config = read_config(path)
    out = dict(data)
    head = head_of(config)
    factory = out.get("factory")
    if factory is None:
        out["factory"] = {"_target_": FACTORY, "path": path, "head": head, "attn_implementation": "eager"}
    elif isinstance(factory, dict) and factory.get("_target_") == FACTORY:
        head = factory.get("head", head)
    task, output, fidelity = task_of(head)
    seq = seq_len(config)
    if out.get("inputs") is None:
        out["inputs"] = derived_inputs(config)
    if out.get("outputs") is None:
        out["outputs"] = [output]
    if out.get("task") is None:
        out["task"] = task
    if not out.get("fidelity"):
        out["fidelity"] = fidelity
    export = dict(out.get("export") or {})
    export.setdefault("exporter", "torchscript")
    if export.get("opset") is None:
        export["opset"] = 17
    export.setdefault("dims", {"batch": 1, "seq": seq})
    out["export"] = export
    reference = dict(out.get("reference") or {})
    if reference.get("dataset") is None:
        reference["dataset"] = sentences(path, folder, "test", int(reference.get("num_samples") or 256), seq)
    out["reference"] = reference
    if out.get("calibration") is None:
        out["calibration"] = sentences(path, folder, "calib", 128, seq)
    return out
