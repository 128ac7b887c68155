"""The promotion gate's arithmetic, by hand; and headline numbers read from an evaluate metrics.json."""

from pathlib import Path

import pytest

from compclip.config import RegisterConfig
from compclip.registry.gate import gate
from compclip.registry.headline import from_tags, headline, to_tags

CFG = RegisterConfig(out_dir=Path("r"), model_name="m", min_gain=0.02, max_r1_drop=0.03, max_zeroshot_drop=0.05)


def h(comp, r1, zeroshot=None):
    out = {"compositional": comp, "r1": r1}
    return out if zeroshot is None else {**out, "zeroshot": zeroshot}


def test_gain_of_exactly_min_gain_passes_and_just_below_is_refused():
    ok, checks, reason = gate(h(0.62, 0.50), h(0.60, 0.50), CFG)
    assert ok and checks[0]["value"] == pytest.approx(0.02) and reason.startswith("accepted")
    ok, checks, reason = gate(h(0.619, 0.50), h(0.60, 0.50), CFG)
    assert not ok and checks[0]["value"] == pytest.approx(0.019) and not checks[0]["passed"]
    assert reason.startswith("refused") and "compositional_gain +0.0190 (needs >= 0.02)" in reason


def test_retrieval_drop_beyond_the_bound_refuses_a_compositional_gain():
    ok, checks, reason = gate(h(0.80, 0.46), h(0.60, 0.50), CFG)  # +0.20 compositional, -0.04 R@1
    assert not ok and [c["passed"] for c in checks] == [True, False]
    assert checks[1]["value"] == pytest.approx(0.04)
    ok, _, _ = gate(h(0.80, 0.47), h(0.60, 0.50), CFG)  # -0.03 R@1: exactly the bound
    assert ok


def test_zero_shot_counts_only_when_both_were_evaluated():
    ok, checks, reason = gate(h(0.70, 0.5, zeroshot=0.40), h(0.60, 0.5, zeroshot=0.50), CFG)  # -0.10 zero-shot
    assert not ok and checks[2]["name"] == "zeroshot_drop" and checks[2]["value"] == pytest.approx(0.10)
    ok, checks, reason = gate(h(0.70, 0.5, zeroshot=0.40), h(0.60, 0.5), CFG)
    assert ok and len(checks) == 2 and "zero-shot not evaluated" in reason


def test_headline_from_metrics_and_through_tags():
    metrics = {
        "sugarcrepe": {
            "swap_obj": {"accuracy": 0.5, "n": 10, "seen": {"accuracy": 0.6, "n": 5}, "held_out": {"accuracy": 0.4, "n": 5}},
            "swap_att": {"accuracy": 0.7, "n": 30, "seen": {"accuracy": 0.7, "n": 30}, "held_out": {"accuracy": float("nan"), "n": 0}},
        },
        "retrieval": {"i2t_R@1": 0.2, "t2i_R@1": 0.4, "captions": 90},
        "zeroshot": {"accuracy": 0.33, "n": 100},
    }
    got = headline(metrics)
    assert got["compositional"] == pytest.approx(0.6) and got["compositional_n"] == 40  # mean over files
    assert got["compositional_seen"] == pytest.approx(0.65) and got["compositional_seen_n"] == 35
    assert got["compositional_held_out"] == pytest.approx(0.4) and got["compositional_held_out_n"] == 5
    assert got["r1"] == pytest.approx(0.3) and got["r1_n"] == 90 and got["zeroshot"] == 0.33
    assert from_tags(to_tags(got)) == got


def test_headline_takes_zero_shot_from_the_suite():
    base = {"sugarcrepe": {"swap_obj": {"accuracy": 0.5, "n": 10}}, "retrieval": {"i2t_R@1": 0.2, "t2i_R@1": 0.4}}
    top1 = {"accuracy": 0.25, "ci_low": 0.2, "ci_high": 0.3, "n": 800}
    got = headline({**base, "suite": {"zeroshot": {"aggregate": {"top1": top1}}}})
    assert got["zeroshot"] == 0.25 and got["zeroshot_n"] == 800
    assert "zeroshot" not in headline({**base, "suite": {"zeroshot": {"aggregate": {"top1": {**top1, "n": 0}}}}})
