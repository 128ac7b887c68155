"""training.embedding_grad: the token embedding's gradient kept between steps gives the dense backward's
gradient and AdamW's update, step after step, with only the rows a step used zeroed again."""

import pytest
import torch

from compclip.models.factory import create
from compclip.training.embedding_grad import KeptEmbeddingGrad, keep_embedding_grad
from compclip.training.optim import param_groups


def batches():
    g = torch.Generator().manual_seed(0)
    for vocab in (range(1, 300), range(200, 500), range(1, 50)):  # overlapping and disjoint rows across steps
        text = torch.zeros(6, 16, dtype=torch.long)
        for i in range(6):
            n = 4 + i
            text[i, 0], text[i, n - 1] = 49406, 49407
            text[i, 1:n - 1] = torch.tensor(list(vocab))[torch.randint(len(vocab), (n - 2,), generator=g)]
        yield torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64), text


def train_three_steps(kept: bool):
    torch.manual_seed(0)
    model = create("compclip-micro").model.double()
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-2)
    keeper = keep_embedding_grad(model, torch.device("cpu"), 1) if kept else None
    grads = []
    for image, text in batches():
        opt.zero_grad(set_to_none=True)
        if keeper:
            keeper.reset()
        out = model(image, text)
        (out["image_features"] @ out["text_features"].T).square().sum().backward()
        grads.append(model.token_embedding.weight.grad.clone())
        opt.step()
    return model, grads


def test_the_kept_gradient_is_the_dense_one_and_the_weights_follow():
    dense_model, dense = train_three_steps(kept=False)
    kept_model, kept = train_three_steps(kept=True)
    for want, got in zip(dense, kept):
        assert not got.is_sparse
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for (name, a), (_, b) in zip(dense_model.named_parameters(), kept_model.named_parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10, msg=name)


def test_only_the_rows_written_last_are_zeroed_and_the_buffer_is_reused():
    emb = torch.nn.Embedding(10, 2)
    keeper = KeptEmbeddingGrad(emb)
    keeper.reset()
    buffer = emb.weight.grad
    emb(torch.tensor([1, 3, 3])).sum().backward()
    assert emb.weight.grad is buffer
    assert buffer[:, 0].tolist() == [0, 1, 0, 2, 0, 0, 0, 0, 0, 0]
    emb.weight.grad = None  # what optimizer.zero_grad(set_to_none=True) does
    keeper.reset()
    assert emb.weight.grad is buffer and not buffer.any()
    emb(torch.tensor([5])).sum().backward()
    assert buffer[:, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("device, world_size", [("cpu", 2), ("meta", 1)])
def test_not_where_the_gradient_must_stay_dense(device, world_size):
    model = create("compclip-micro").model
    assert keep_embedding_grad(model, torch.device(device), world_size) is None
    assert not model.token_embedding.sparse
