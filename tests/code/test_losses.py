"""Every loss term against values computed by hand (plain-Python loops over 2-3 samples), plus gradcheck."""

import math

import pytest
import torch
import torch.nn.functional as F

from compclip.config import LossConfig
from compclip.losses import build_loss
from compclip.losses.ce_clip import CeClipLoss
from compclip.losses.clear_glass import (ClearGlassLoss, centroid_inner, centroid_outer, pairwise_inner,
                                         pairwise_outer)
from compclip.losses.hard_positive import HardPositiveLoss
from compclip.losses.negclip import NegClipLoss

T = torch.tensor


def unit(*rows):
    return F.normalize(T(rows, dtype=torch.float64), dim=-1)


def dot(a, b):
    return sum(x * y for x, y in zip(a.tolist(), b.tolist()))


def nll(pos, others):
    """−log e^pos / (e^pos + Σ e^others)"""
    return -pos + math.log(math.exp(pos) + sum(math.exp(o) for o in others))


SCALE = 2.0
IMG = unit([1, 0], [0.6, 0.8])
TXT = unit([0.8, 0.6], [0, 1])
NEG = unit([0.3, 1], [0.5, -1], [1, 0.1], [1, 1]).reshape(2, 2, 2)  # (B=2, K=2, D)
MASK = T([[True, True], [True, False]])


def s(a, b):
    return SCALE * dot(a, b)


def test_negclip_by_hand():
    loss = NegClipLoss(mask_invalid=True)(IMG, TXT, T(SCALE, dtype=torch.float64), NEG, MASK)["contrastive_loss"]
    valid_negs = [NEG[i, k] for i in range(2) for k in range(2) if MASK[i, k]]
    i2t = [nll(s(IMG[i], TXT[i]), [s(IMG[i], TXT[j]) for j in range(2) if j != i] + [s(IMG[i], n) for n in valid_negs])
           for i in range(2)]
    t2i = [nll(s(TXT[i], IMG[i]), [s(TXT[i], IMG[j]) for j in range(2) if j != i]) for i in range(2)]
    assert loss.item() == pytest.approx((sum(i2t) / 2 + sum(t2i) / 2) / 2, abs=1e-12)


def test_negclip_unmasked_keeps_placeholder_negatives():
    masked = NegClipLoss(True)(IMG, TXT, T(SCALE), NEG, MASK)["contrastive_loss"]
    unmasked = NegClipLoss(False)(IMG, TXT, T(SCALE), NEG, MASK)["contrastive_loss"]
    everything = NegClipLoss(True)(IMG, TXT, T(SCALE), NEG, torch.ones_like(MASK))["contrastive_loss"]
    assert unmasked.item() == pytest.approx(everything.item()) and masked < unmasked


def ce(**kw):
    return CeClipLoss(["relation", "attribute"], imc_weight=1.0, cmr_weight=1.0, **kw).double()


def test_ce_clip_imc_own_and_batch_by_hand():
    scale = T(SCALE, dtype=torch.float64)
    own = ce(imc_negatives="own")(IMG, TXT, scale, NEG, MASK)["imc_loss"].item()
    batch = ce(imc_negatives="batch")(IMG, TXT, scale, NEG, MASK)["imc_loss"].item()
    g = [s(IMG[i], TXT[i]) for i in range(2)]
    exp_own = [nll(g[i], [s(TXT[i], NEG[i, k]) for k in range(2) if MASK[i, k]]) for i in range(2)]
    exp_batch = [nll(g[i], [s(TXT[i], NEG[j, k]) for j in range(2) for k in range(2) if MASK[j, k]]) for i in range(2)]
    assert own == pytest.approx(sum(exp_own) / 2, abs=1e-12)
    assert batch == pytest.approx(sum(exp_batch) / 2, abs=1e-12)


def test_ce_clip_cmr_and_threshold_over_two_steps():
    loss = ce(upper_bound=10.0)
    scale = T(SCALE, dtype=torch.float64)
    g = [s(IMG[i], TXT[i]) for i in range(2)]
    d = [[s(IMG[i], NEG[i, k]) if MASK[i, k] else 0.0 for k in range(2)] for i in range(2)]

    # step 1: thresholds start at 0
    cmr1 = loss(IMG, TXT, scale, NEG, MASK)["cmr_loss"].item()
    expected1 = sum(max(0.0, 0 + d[i][k] - g[i]) for i in range(2) for k in range(2) if MASK[i, k]) / 4  # divisor B·K
    assert cmr1 == pytest.approx(expected1, abs=1e-12)
    assert loss.thresholds.tolist() == [0.0, 0.0]  # the new value waits for the step's end
    loss.end_step()
    th = [sum(g) / 2 - (d[0][0] + d[1][0]) / 2, sum(g) / 2 - d[0][1] / 1]  # type 1 has one valid negative
    th = [min(max(t, 0.0), 10.0) for t in th]
    assert loss.thresholds.tolist() == pytest.approx(th, abs=1e-12) and min(th) > 0

    # step 2: the previous step's thresholds are the margins
    cmr2 = loss(IMG, TXT, scale, NEG, MASK)["cmr_loss"].item()
    expected2 = sum(max(0.0, th[k] + d[i][k] - g[i]) for i in range(2) for k in range(2) if MASK[i, k]) / 4
    assert cmr2 == pytest.approx(expected2, abs=1e-12) and cmr2 > cmr1

    loss.begin_epoch()  # released code: a new epoch starts from 0
    assert loss.thresholds.tolist() == [0.0, 0.0]


def test_ce_clip_unmasked_is_the_released_code_everywhere():
    """mask_invalid: false keeps placeholders in CMR and the thresholds too, not only in the ITC."""
    loss = ce(mask_invalid=False)
    scale = T(SCALE, dtype=torch.float64)
    g = [s(IMG[i], TXT[i]) for i in range(2)]
    d = [[s(IMG[i], NEG[i, k]) for k in range(2)] for i in range(2)]  # the placeholder (1, 1) counts
    cmr = loss(IMG, TXT, scale, NEG, MASK)["cmr_loss"].item()
    assert cmr == pytest.approx(sum(max(0.0, d[i][k] - g[i]) for i in range(2) for k in range(2)) / 4, abs=1e-12)
    loss.end_step()
    th = [min(max(sum(g) / 2 - (d[0][k] + d[1][k]) / 2, 0.0), 10.0) for k in range(2)]
    assert loss.thresholds.tolist() == pytest.approx(th, abs=1e-12)
    imc = ce(mask_invalid=False, imc_negatives="own")(IMG, TXT, scale, NEG, MASK)["imc_loss"].item()
    assert imc == pytest.approx(sum(nll(g[i], [s(TXT[i], NEG[i, k]) for k in range(2)]) for i in range(2)) / 2,
                                abs=1e-12)


def test_ce_clip_threshold_is_clamped_and_fixed_mode_stays():
    loss = ce(upper_bound=0.05)
    loss(IMG, TXT, T(SCALE, dtype=torch.float64), NEG, MASK)
    loss.end_step()
    assert max(loss.thresholds.tolist()) <= 0.05 and min(loss.thresholds.tolist()) >= 0
    fixed = ce(threshold="fixed", fixed_value=2.0)
    fixed(IMG, TXT, T(SCALE, dtype=torch.float64), NEG, MASK)
    fixed.end_step()
    assert fixed.thresholds.tolist() == [2.0, 2.0]


def test_ce_clip_type_without_valid_negatives_keeps_its_threshold():
    loss = ce()
    loss.thresholds.fill_(1.5)
    loss(IMG, TXT, T(SCALE, dtype=torch.float64), NEG, T([[True, False], [True, False]]))
    loss.end_step()
    assert loss.thresholds[1].item() == 1.5


POS = unit([0.9, 0.5], [0.1, 1])


def test_hard_positive_without_positives_equals_negclip():
    none = T([False, False])
    hp = HardPositiveLoss()(IMG, TXT, T(SCALE), NEG, MASK, POS, none)
    nc = NegClipLoss()(IMG, TXT, T(SCALE), NEG, MASK)
    assert hp["contrastive_loss"].item() == pytest.approx(nc["contrastive_loss"].item(), abs=1e-12)
    assert hp["rank_loss"].item() == 0.0


def test_hard_positive_by_hand():
    pos_mask = T([True, False])
    out = HardPositiveLoss(rank_weight=1.0, margin=0.5)(IMG, TXT, T(SCALE, dtype=torch.float64), NEG, MASK, POS, pos_mask)
    negs = [NEG[i, k] for i in range(2) for k in range(2) if MASK[i, k]]
    # image 0 has positives T0 and P0; image 1 has T1 only. P0 is a rival for image 1, P1 is a placeholder.
    rivals0 = [s(IMG[0], TXT[1])] + [s(IMG[0], n) for n in negs]
    rivals1 = [s(IMG[1], TXT[0]), s(IMG[1], POS[0])] + [s(IMG[1], n) for n in negs]
    i2t = [nll(s(IMG[0], TXT[0]), rivals0), nll(s(IMG[0], POS[0]), rivals0), nll(s(IMG[1], TXT[1]), rivals1)]
    t2i = [nll(s(TXT[0], IMG[0]), [s(TXT[0], IMG[1])]), nll(s(TXT[1], IMG[1]), [s(TXT[1], IMG[0])]),
           nll(s(POS[0], IMG[0]), [s(POS[0], IMG[1])])]
    assert out["contrastive_loss"].item() == pytest.approx((sum(i2t) / 3 + sum(t2i) / 3) / 2, abs=1e-12)
    rank = [max(0.0, 0.5 + s(IMG[0], NEG[0, k]) - s(IMG[0], POS[0])) for k in range(2)]
    assert out["rank_loss"].item() == pytest.approx(sum(rank) / 2, abs=1e-12)


# CLEAR GLASS: M=2 groups of N=2
GI = unit([1, 0.1], [0.9, 0.3], [0.1, 1], [-0.2, 1]).reshape(2, 2, 2)
GT = unit([1, 0], [0.7, 0.7], [0, 1], [-0.5, 1]).reshape(2, 2, 2)


def norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_pairwise_outer_by_hand():
    tau = 0.1
    imgs, txts = GI.reshape(4, 2), GT.reshape(4, 2)
    group = [0, 0, 1, 1]

    def term(a_set, b_set):
        total = 0.0
        for a in range(4):
            ss = [dot(a_set[a], b_set[b]) / tau for b in range(4)]
            pos = sum(math.exp(ss[b]) for b in range(4) if group[b] == group[a])
            total += -math.log(pos / sum(math.exp(x) for x in ss))
        return total / 4

    expected = (term(imgs, txts) + term(txts, imgs)) / 2
    assert pairwise_outer(GI, GT, tau).item() == pytest.approx(expected, abs=1e-10)


def test_pairwise_inner_by_hand():
    tau = 0.07
    zs = {g: [norm([x * y for x, y in zip(GI[g, a].tolist(), GT[g, b].tolist())]) for a in range(2) for b in range(2)]
          for g in range(2)}
    cents = [norm([sum(z[d] for z in zs[g]) / 4 for d in range(2)]) for g in range(2)]
    total = 0.0
    for g in range(2):
        for z in zs[g]:
            logits = [sum(zi * ci for zi, ci in zip(z, c)) / tau for c in cents]
            total += nll(logits[g], [logits[1 - g]])
    assert pairwise_inner(GI, GT, tau).item() == pytest.approx(total / 8, abs=1e-10)


def test_centroid_losses_by_hand():
    tau, tau_in = 0.1, 0.07
    ic = [norm([sum(GI[g, n, d].item() for n in range(2)) / 2 for d in range(2)]) for g in range(2)]
    tc = [norm([sum(GT[g, n, d].item() for n in range(2)) / 2 for d in range(2)]) for g in range(2)]

    def dd(a, b):
        return sum(x * y for x, y in zip(a, b))

    outer = sum(nll(dd(ic[g], tc[g]) / tau, [dd(ic[g], tc[1 - g]) / tau]) +
                nll(dd(tc[g], ic[g]) / tau, [dd(tc[g], ic[1 - g]) / tau]) for g in range(2)) / 4
    assert centroid_outer(GI, GT, tau).item() == pytest.approx(outer, abs=1e-10)
    inner = 0.0
    for feats, cents in ((GI, ic), (GT, tc)):
        for g in range(2):
            for n in range(2):
                x = feats[g, n].tolist()
                inner += nll(dd(x, cents[g]) / tau_in, [dd(x, cents[1 - g]) / tau_in])
    assert centroid_inner(GI, GT, tau_in).item() == pytest.approx(inner / 8, abs=1e-10)


def test_clear_glass_total_is_alpha_weighted():
    out = ClearGlassLoss("pairwise", alpha=0.7)(GI, GT)
    assert out["outer_loss"].item() == pytest.approx(0.7 * pairwise_outer(GI, GT, 0.1).item())
    assert out["inner_loss"].item() == pytest.approx(0.3 * pairwise_inner(GI, GT, 0.07).item())


def test_combined_weights_and_prefixes_terms():
    cfg = LossConfig(negative_rules=["swap_nouns", "replace_adj"])
    feats = dict(image_features=IMG, text_features=TXT, logit_scale=T(SCALE, dtype=torch.float64),
                 neg_features=NEG, neg_mask=MASK, pos_features=POS, pos_mask=T([True, False]),
                 group_image_features=GI, group_text_features=GT)
    combined = build_loss({"negclip": 0.5, "clear_glass": 2.0}, cfg, ["a", "b"]).double()(**feats)
    assert set(combined) == {"negclip/contrastive_loss", "clear_glass/outer_loss", "clear_glass/inner_loss"}
    alone = NegClipLoss()(**feats)["contrastive_loss"]
    assert combined["negclip/contrastive_loss"].item() == pytest.approx(0.5 * alone.item())
    assert build_loss({"ce_clip": 1.0, "clear_glass": 1.0}, cfg, ["a", "b"]).needs == {"pairs", "negatives", "groups"}


@pytest.mark.parametrize("term,variant", [("clip", "pairwise"), ("negclip", "pairwise"), ("ce_clip", "pairwise"),
                                          ("hard_positive", "pairwise"), ("clear_glass", "pairwise"),
                                          ("clear_glass", "centroid")])
def test_gradcheck(term, variant):
    torch.manual_seed(0)
    b, k, d, m, n = 3, 2, 4, 2, 3
    mask = T([[True, False], [True, True], [False, True]])
    cfg = LossConfig(negative_rules=["swap_nouns", "replace_adj"],
                     clear_glass={"variant": variant, "groups_per_batch": m, "group_size": n})
    loss = build_loss({term: 1.0}, cfg, ["a", "b"]).double()

    def f(img, txt, neg, pos, gi, gt):
        feats = dict(image_features=F.normalize(img, dim=-1), text_features=F.normalize(txt, dim=-1),
                     logit_scale=T(3.0, dtype=torch.float64), neg_features=F.normalize(neg, dim=-1), neg_mask=mask,
                     pos_features=F.normalize(pos, dim=-1), pos_mask=T([True, False, True]),
                     group_image_features=gi, group_text_features=gt)
        return sum(loss(**feats).values())

    args = [torch.randn(*shape, dtype=torch.float64, requires_grad=True)
            for shape in ((b, d), (b, d), (b, k, d), (b, d), (m, n, d), (m, n, d))]
    assert torch.autograd.gradcheck(f, args)


def test_skipping_placeholder_encodings_changes_nothing():
    """The step does not encode '###' negatives/positives when every term masks them: same loss, same
    gradient as encoding them."""
    from compclip.models.factory import create
    from compclip.training.step import forward_backward

    torch.manual_seed(0)
    model = create("compclip-micro").model
    b, k, ctx = 4, 3, model.context_length
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(b, 3, 16, 16, generator=g), "text": torch.randint(1, 400, (b, ctx), generator=g),
             "neg_text": torch.randint(1, 400, (b, k, ctx), generator=g),
             "neg_mask": T([[True, False, True], [False, False, True], [True, True, True], [True, False, False]]),
             "pos_text": torch.randint(1, 400, (b, ctx), generator=g), "pos_mask": T([True, False, True, False])}
    loss = build_loss({"ce_clip": 1.0, "hard_positive": 0.5}, LossConfig(negative_rules=["swap_nouns", "replace_adj",
                                                                                          "replace_noun"]))
    assert loss.skips_invalid
    results = []
    for skip in (False, True):
        model.zero_grad()
        terms = forward_backward(model, loss, batch, skip_invalid=skip)
        results.append((sum(terms.values()).item(), [q.grad.clone() for q in model.parameters() if q.grad is not None]))
        loss.end_step()
        loss.begin_epoch()
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-5)
    for a, c in zip(g0, g1):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-6)
    unmasked = build_loss({"ce_clip": 1.0}, LossConfig(negative_rules=["swap_nouns"], mask_invalid=False))
    assert not unmasked.skips_invalid  # the released code reads placeholders: they must be encoded


def test_combined_says_it_counts_the_contrastive_loss_twice(caplog):
    loss = build_loss({"ce_clip": 1.0, "hard_positive": 0.5, "clear_glass": 0.5}, LossConfig())
    assert loss.contrastive_weight == 1.5
    assert "counted 2 times" in caplog.text
    assert build_loss({"negclip": 1.0}).contrastive_weight == 1.0
