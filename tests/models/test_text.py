"""pipeline.models.text: a transformers-style signature whose output ignores padding."""

from __future__ import annotations

import torch

from pipeline.models.text import build


def _batch(b: int, s: int, length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 32, (b, s), generator=g)
    mask = torch.zeros(b, s, dtype=torch.int64)
    mask[:, :length] = 1
    types = torch.zeros(b, s, dtype=torch.int64)
    types[:, length // 2 : length] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


def test_keyword_forward_shape() -> None:
    model = build(num_classes=5).eval()
    out = model(**_batch(3, 10, 7))
    assert out.shape == (3, 5) and out.dtype == torch.float32


def test_padding_does_not_change_logits() -> None:
    torch.manual_seed(0)
    model = build().eval()
    short = _batch(2, 6, 6)
    padded = {k: torch.cat([v, torch.zeros(2, 4, dtype=torch.int64)], dim=1) for k, v in short.items()}
    padded["input_ids"][:, 6:] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(**padded), model(**short), atol=1e-5, rtol=1e-4)
        # but the real tokens do matter
        other = dict(short, input_ids=(short["input_ids"] % 31) + 1)
        assert not torch.allclose(model(**other), model(**short))
