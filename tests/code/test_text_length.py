"""Texts encoded up to their end token (packed on CPU, in buckets elsewhere) give open_clip's features and
gradients, in the texts' own order."""

import pytest
import torch
from open_clip.model import CLIP

from compclip.models.factory import create
from compclip.models import text_length
from compclip.models.text_length import buckets, end_positions, fit_text_length, pack, supports


def tokens_of_lengths(lengths: list[int], ctx: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    text = torch.zeros(len(lengths), ctx, dtype=torch.long)
    for i, n in enumerate(lengths):  # start token, n-2 words, end token (the largest id: argmax pooling)
        text[i, 0] = 49406
        text[i, 1:n - 1] = torch.randint(1, 49000, (n - 2,), generator=g)
        text[i, n - 1] = 49407
    return text


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    full = create("compclip-micro", fit_text=False).model.double()
    fitted = create("compclip-micro").model.double()
    fitted.load_state_dict(full.state_dict())
    return full, fitted


def test_buckets_sort_by_length_and_cover_every_row_once():
    lengths = torch.tensor([5, 3, 9, 3, 7, 1])
    parts = buckets(lengths, min_rows=2)
    assert [p.tolist() for p in parts] == [[5, 1], [3, 0], [4, 2]]
    assert [p.tolist() for p in buckets(lengths, min_rows=100)] == [[5, 1, 3, 0, 4, 2]]


def test_pack_fills_rows_first_fit_decreasing_and_places_every_text_once():
    assert pack([5, 3, 9, 3, 7, 1], 10) == [[2, 5], [4, 1], [0, 3]]  # 9+1, 7+3, 5+3
    assert pack([10, 10], 10) == [[0], [1]]  # a text of the whole context has a row to itself
    lengths = [n for n in range(1, 33) for _ in range(3)]  # every length a 32-token context allows
    rows = pack(lengths, 32)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 32 for r in rows)
    assert len(rows) <= sum(lengths) / 32 * 1.1  # nearly full rows


@pytest.mark.parametrize("path", ["_encode_packed", "_encode_bucketed"])
def test_both_ways_give_open_clips_features(models, path):
    full, fitted = models
    ctx = full.context_length
    text = tokens_of_lengths([3, ctx, 5, 2, 9, ctx - 1, 4, 4] * 40, ctx)
    got = getattr(text_length, path)(fitted, text, end_positions(fitted, text))
    torch.testing.assert_close(got, full.encode_text(text), rtol=0, atol=1e-12)


def test_fitted_encoding_equals_the_full_context(models):
    full, fitted = models
    assert full.encode_text.__func__ is CLIP.encode_text and supports(fitted)
    ctx = full.context_length
    lengths = [3, ctx, 5, 2, 9, ctx - 1] * 50  # 300 rows: several buckets, texts cut at the context included
    text = tokens_of_lengths(lengths, ctx)
    want = full.encode_text(text, normalize=True)
    got = fitted.encode_text(text, normalize=True)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # and through forward (what the trainer calls), with the same gradients
    image = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    for m in (full, fitted):
        m.zero_grad()
        out = m(image, text[:40])
        (out["image_features"] @ out["text_features"].T).square().sum().backward()
    for (name, a), (_, b) in zip(full.named_parameters(), fitted.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-10, msg=name)


def test_a_model_it_cannot_fit_keeps_its_own_encoder():
    class NotClip(torch.nn.Module):
        def encode_text(self, text):
            return text

    m = NotClip()
    assert not fit_text_length(m)
    assert m.encode_text.__func__ is NotClip.encode_text
