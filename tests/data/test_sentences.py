import numpy as np
import pytest

from pipeline.data import Samples
from pipeline.data import sentences as S
from pipeline.errors import ConfigError

TEXT = """The "demo" statement
********************

Demo statements are used here. They show how sentences are kept!

   demo_stmt ::= "demo" expression

* A list item is prose too. It has two sentences.

   >>> print("code")
   code

Short one.
Is this a question? Yes it is, with words enough.

X = 1 + 2 * 3 = 7 + 0 = 9.
"""


def test_sentences_keep_prose_only():
    # heading, grammar rule and doctest dropped; list item kept; "Short one." has too few words;
    # the formula has too few letters; lines of a paragraph are joined
    assert S.sentences(TEXT) == [
        "Demo statements are used here.",
        "They show how sentences are kept!",
        "A list item is prose too.",
        "It has two sentences.",
        "Is this a question?",
        "Yes it is, with words enough.",
    ]


def test_passages_group_consecutive_sentences_deterministically():
    texts = {"b": TEXT, "a": "One two three four. Five six seven eight. Nine ten eleven twelve."}
    first = S.passages(texts, max_sentences=2, seed=3)
    assert first == S.passages(dict(reversed(list(texts.items()))), max_sentences=2, seed=3)
    joined = " ".join(first)
    assert joined.startswith("One two three four.")  # topic 'a' before 'b'
    for passage in first:
        assert 1 <= passage.count(". ") + passage.count("! ") + passage.count("? ") + 1 <= 2
    assert S.passages(texts, max_sentences=1) == S.sentences(texts["a"]) + S.sentences(texts["b"])


def test_splits_are_disjoint_and_stable():
    test = S.split_passages("test")
    calib = S.split_passages("calib")
    assert len(test) >= 64 and len(calib) >= 64
    assert not set(test) & set(calib)
    assert all(S.split_of(p) == "test" for p in test)
    assert S.split_passages("test", 10) == test[:10]
    assert S.split_passages("test", 10, seed=1) != test[:10]


def test_load_tokenizes_padded_int64():
    samples = S.load("test", num_samples=64)
    assert isinstance(samples, Samples) and len(samples) == 64 and samples.labels is None
    ids, mask, types = (samples.inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids"))
    for arr in (ids, mask, types):
        assert arr.dtype == np.int64 and arr.shape == (64, 128)
    lengths = mask.sum(axis=1)
    assert lengths.min() < 40 and lengths.max() > 100  # lengths vary: padding matters
    assert np.all(mask == (np.arange(128)[None, :] < lengths[:, None]))  # right-padded
    assert np.all(ids[mask == 0] == 0) and np.all(types == 0)
    assert np.all(ids[:, 0] == 101)  # [CLS]
    assert np.all(ids[np.arange(64), lengths - 1] == 102)  # [SEP] ends every sample


def test_truncation_to_seq_len():
    out = S.tokenize(["This sentence is clearly longer than eight tokens in total."], seq_len=8)
    assert out["input_ids"].shape == (1, 8) and out["attention_mask"].sum() == 8
    assert out["input_ids"][0, -1] == 102


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"split": "train"}, ["train", "test", "calib"]),
        ({"split": "test", "num_samples": 100000}, ["num_samples", "100000"]),
        ({"split": "test", "seq_len": 2}, ["seq_len"]),
        ({"split": "test", "tokenizer": "pkg://pipeline/no/tokenizer.json"}, ["tokenizer"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ConfigError) as err:
        S.load(**kwargs)
    for word in words:
        assert word in str(err.value)
