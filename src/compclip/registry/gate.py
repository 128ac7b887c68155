"""The promotion gate: pure arithmetic on two headlines (the challenger's and the champion's, or with no
champion yet the baseline method's), so it can be checked by hand."""

from __future__ import annotations

from compclip.config import RegisterConfig

EPS = 1e-12  # a gain of exactly min_gain passes, whatever the float rounding


def gate(challenger: dict, reference: dict, cfg: RegisterConfig) -> tuple[bool, list[dict], str]:
    """(accepted, checks, reason). Each check: name, value, bound, passed. The challenger must gain at least
    min_gain in compositional mean, lose at most max_r1_drop retrieval R@1 and, when both were evaluated
    on a zero-shot benchmark, at most max_zeroshot_drop zero-shot accuracy."""
    gain = challenger["compositional"] - reference["compositional"]
    r1_drop = reference["r1"] - challenger["r1"]
    checks = [
        {"name": "compositional_gain", "value": gain, "bound": f">= {cfg.min_gain}",
         "passed": gain >= cfg.min_gain - EPS},
        {"name": "r1_drop", "value": r1_drop, "bound": f"<= {cfg.max_r1_drop}",
         "passed": r1_drop <= cfg.max_r1_drop + EPS},
    ]
    if "zeroshot" in challenger and "zeroshot" in reference:
        drop = reference["zeroshot"] - challenger["zeroshot"]
        checks.append({"name": "zeroshot_drop", "value": drop, "bound": f"<= {cfg.max_zeroshot_drop}",
                       "passed": drop <= cfg.max_zeroshot_drop + EPS})
    failed = [c for c in checks if not c["passed"]]
    parts = [f"{c['name']} {c['value']:+.4f} ({'ok' if c['passed'] else 'needs ' + c['bound']})" for c in checks]
    if "zeroshot_drop" not in {c["name"] for c in checks}:
        parts.append("zero-shot not evaluated")
    reason = ("accepted: " if not failed else "refused: ") + ", ".join(parts)
    return not failed, checks, reason
