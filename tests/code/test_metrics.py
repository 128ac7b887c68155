import numpy as np
import torch

from compclip.evaluation.metrics import accuracy_with_ci, bootstrap_ci, retrieval_recall
from compclip.training.optim import param_groups, warmup_cosine


def test_retrieval_recall_by_hand():
    # 2 images, 3 captions: captions 0,1 belong to image 0, caption 2 to image 1
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]])
    r = retrieval_recall(img, txt, np.array([0, 0, 1]), [1, 2])
    # t2i: caption0 -> image1 best (wrong), caption1 -> image0 (right), caption2 -> image0 0.8 > 0.6 (wrong)
    assert abs(r["t2i_R@1"] - 1 / 3) < 1e-6 and r["t2i_R@2"] == 1.0
    # i2t: image0's best caption is caption1 (1.0) -> rank 0; image1: caption0 (1.0) beats caption2 (0.6)
    assert r["i2t_R@1"] == 0.5 and r["i2t_R@2"] == 1.0


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.array([1] * 70 + [0] * 30)
    a, b = bootstrap_ci(x, 2000, 0.95, seed=1), bootstrap_ci(x, 2000, 0.95, seed=1)
    assert a == b and a[0] < 0.7 < a[1]
    assert 0.05 < a[1] - a[0] < 0.25  # ~ 2 * 1.96 * sqrt(.7*.3/100) = 0.18
    r = accuracy_with_ci(x, 500, 0.95, 0)
    assert r["accuracy"] == 0.7 and r["n"] == 100
    assert np.isnan(accuracy_with_ci(np.array([]), 10, 0.95, 0)["accuracy"])


def test_warmup_cosine_values():
    f = warmup_cosine(warmup_steps=4, total_steps=12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and abs(f(8) - 0.5) < 1e-12 and abs(f(12)) < 1e-12 and f(20) == 0.0


def test_param_groups_exclude_gains_biases_and_logit_scale():
    m = torch.nn.Module()
    m.proj = torch.nn.Linear(3, 3)
    m.ln = torch.nn.LayerNorm(3)
    m.logit_scale = torch.nn.Parameter(torch.ones([]))
    no_decay, decay = param_groups(m, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 3])]
    assert len(no_decay["params"]) == 4  # proj.bias, ln.weight, ln.bias, logit_scale
