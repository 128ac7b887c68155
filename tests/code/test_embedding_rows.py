"""training.embedding_rows: AdamW that leaves the token embedding's unread rows alone gives torch's dense
AdamW weights (float64, to rounding), step after step, through clipping, reads outside training, saving
and resuming; an unread row is only decayed, by the owed factor computed here by hand."""

import copy

import pytest
import torch
import torch.nn.functional as F

from compclip.config import TrainConfig
from compclip.models.factory import create
from compclip.training.embedding_rows import EmbeddingRowsAdamW
from compclip.training.optim import adamw, param_groups

VOCABS = (range(1, 300), range(200, 500), range(1, 50), range(600, 640))  # overlapping and disjoint rows


def texts(vocab, g: torch.Generator) -> torch.Tensor:
    text = torch.zeros(6, 16, dtype=torch.long)
    for i in range(6):
        n = 4 + i
        text[i, 0], text[i, n - 1] = 49406, 49407
        text[i, 1:n - 1] = torch.tensor(list(vocab))[torch.randint(len(vocab), (n - 2,), generator=g)]
    return text


def lr(step: int) -> float:
    return 1e-2 / (1 + step)


def model_and_optimizer(rows: bool):
    torch.manual_seed(0)
    model = create("compclip-micro").model.double()
    groups = param_groups(model, 0.1)
    if rows:
        return model, EmbeddingRowsAdamW(groups, model.token_embedding, lr=1e-2)
    return model, torch.optim.AdamW(groups, lr=1e-2, fused=True)


def train(model, opt, steps=range(len(VOCABS)), read_between=None):
    """Steps on batches of VOCABS[i]; after step `read_between`, texts of new rows are encoded without
    gradient (as a validation score would). Returns the text features each step computed."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64), texts(v, g)) for v in VOCABS]
    seen = []
    for i in steps:
        image, text = batches[i]
        for group in opt.param_groups:  # a schedule, as the trainer's LambdaLR sets it
            group["lr"] = lr(i)
        opt.zero_grad(set_to_none=True)
        out = model(image, text)
        seen.append(out["text_features"].detach())
        (out["image_features"] @ out["text_features"].T).square().sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        if i == read_between:
            with torch.no_grad():
                seen.append(model.encode_text(texts(range(1000, 1100), g)))
    return seen


def assert_same_weights(a, b, atol=1e-10):  # Adam divides by sqrt(v): rounding grows where v is small
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=0, atol=atol, msg=name)


def test_the_weights_are_dense_adamw_s_step_after_step():
    dense_model, dense_opt = model_and_optimizer(rows=False)
    rows_model, rows_opt = model_and_optimizer(rows=True)
    want = train(dense_model, dense_opt, read_between=1)
    got = train(rows_model, rows_opt, read_between=1)
    for a, b in zip(want, got):  # every forward read the same weights, also of rows first read mid-run
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)
    assert rows_model.token_embedding.weight.grad.is_sparse  # the sparse backward
    assert_same_weights(dense_model, rows_model)  # state_dict settles the unread rows' owed decay
    moments = rows_opt.state[rows_model.token_embedding.weight]
    torch.testing.assert_close(moments["exp_avg_sq"], dense_opt.state[dense_model.token_embedding.weight]["exp_avg_sq"],
                               rtol=0, atol=1e-15)


def test_an_unread_row_is_only_decayed_by_the_owed_factor():
    model, opt = model_and_optimizer(rows=True)
    row = 40000  # no batch reads it
    before = model.token_embedding.weight[row].clone()
    train(model, opt)
    owed = (1 - 1e-2 * 0.1) * (1 - 1e-2 / 2 * 0.1) * (1 - 1e-2 / 3 * 0.1) * (1 - 1e-2 / 4 * 0.1)  # 1 - lr wd
    assert not opt.used[row] and opt.owed == pytest.approx(owed, rel=1e-15)
    unchanged = model.token_embedding.weight[row].clone()  # not touched until settled
    assert torch.equal(unchanged, before)
    model.state_dict()
    assert opt.owed == 1.0
    torch.testing.assert_close(model.token_embedding.weight[row], before * owed, rtol=1e-15, atol=0)
    assert not opt.state[model.token_embedding.weight]["exp_avg"][row].any()


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_run():
    model, opt = model_and_optimizer(rows=True)
    train(model, opt, steps=range(2))
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    train(model, opt, steps=range(2, 4))

    resumed, resumed_opt = model_and_optimizer(rows=True)
    resumed.load_state_dict(ckpt["model"])
    resumed_opt.load_state_dict(ckpt["opt"])
    assert torch.equal(resumed_opt.used, ckpt["opt"]["embedding_rows"]["used"])
    train(resumed, resumed_opt, steps=range(2, 4))
    assert_same_weights(model, resumed, atol=0)


@pytest.mark.parametrize("saved_by", ["dense", "rows"])
def test_a_checkpoint_of_either_optimizer_resumes_in_the_other(saved_by):
    """A run checkpointed by torch's dense AdamW (before this optimizer existed) resumes with it, and the
    other way round, giving what the saving optimizer would have gone on to give."""
    model, opt = model_and_optimizer(rows=saved_by == "rows")
    train(model, opt, steps=range(2))
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    train(model, opt, steps=range(2, 4))

    other, other_opt = model_and_optimizer(rows=saved_by != "rows")
    other.load_state_dict(ckpt["model"])
    other_opt.load_state_dict(ckpt["opt"])
    train(other, other_opt, steps=range(2, 4))
    assert_same_weights(model, other)


def test_a_gradient_for_rows_no_forward_read_is_refused():
    model, opt = model_and_optimizer(rows=True)
    weight = model.token_embedding.weight
    F.embedding(torch.tensor([7, 8]), weight, sparse=True).sum().backward()  # around the module
    with pytest.raises(RuntimeError, match="no forward of the embedding read"):
        opt.step()


def cfg() -> TrainConfig:
    return TrainConfig(out_dir="models", epochs=1, batch_size=4, lr=1e-3)


@pytest.mark.parametrize("device, world_size, rows", [("cpu", 1, True), ("cpu", 2, False), ("meta", 1, False)])
def test_installed_on_one_cpu_process_only(device, world_size, rows):
    model = create("compclip-micro").model
    opt = adamw(param_groups(model, 0.1), cfg(), torch.device(device), model, world_size)
    assert isinstance(opt, EmbeddingRowsAdamW) == rows
    assert model.token_embedding.sparse == rows
