"""The quality audit of CE-CLIP's four negative types on the shipped COCO-style captions, for the code of
this checkout and (with --before COMMIT) for the code of an earlier commit, audited alike: per type the
coverage (captions with a negative), the share passing each check, and 20 seeded random examples to judge
by hand.

  python bench/negatives_quality.py [--before bf9aed8] [--examples 20] [--out FILE.json]
  python bench/negatives_quality.py --smoke   # seconds: 10 captions, this checkout only
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "coco_style_captions.txt"
# runs inside a checkout of any commit: the API every version since the CE-CLIP rules has
GENERATE = """
import json, sys
from compclip.text.fillers import LexiconFiller
from compclip.text.negatives import ce_clip_negatives
from compclip.text.nlp import SPATIAL_NOUNS, load_spacy, tokens
captions = json.loads(sys.stdin.read())
nlp = load_spacy()
lex = LexiconFiller.from_tokens((tokens(d) for d in nlp.pipe(captions)), 0, exclude=SPATIAL_NOUNS)
rows = [(n.caption, n.neg_type, n.negative, n.valid) for n in ce_clip_negatives([(c, c) for c in captions], nlp, lex, 0)]
print(json.dumps(rows))
"""


def negatives(src: Path, captions: list[str]) -> list[tuple]:
    run = subprocess.run([sys.executable, "-c", GENERATE], input=json.dumps(captions), capture_output=True, text=True,
                         check=True, cwd=src, env={"PYTHONPATH": str(src / "src"), "PATH": "/usr/bin:/bin",
                                                   "HF_HUB_OFFLINE": "1"})
    return [tuple(r) for r in json.loads(run.stdout.strip().splitlines()[-1])]


def report(rows: list[tuple], captions: list[str], examples: int) -> dict:
    from compclip.text.fillers import WordTable
    from compclip.text.nlp import load_spacy, tokens
    from compclip.text.quality import audit

    nlp = load_spacy()
    parsed = {c: tokens(d) for c, d in zip(captions, nlp.pipe(captions))}
    table = WordTable.from_tokens(parsed.values())
    valid = [r for r in rows if r[3]]
    out: dict[str, dict] = {}
    passed: dict[str, Counter] = {}
    for (caption, neg_type, negative, _), doc in zip(valid, nlp.pipe([r[2] for r in valid])):
        result = audit(parsed[caption], tokens(doc), neg_type, table)
        c = passed.setdefault(neg_type, Counter())
        c["audited"] += 1
        for check, ok in {**result, "all": all(result.values())}.items():
            c[check] += int(ok)
    for neg_type in ("relation", "attribute", "object", "action"):
        c = passed.get(neg_type, Counter())
        mine = [r for r in valid if r[1] == neg_type]
        sample = random.Random(0).sample(mine, min(examples, len(mine)))
        out[neg_type] = {"captions": len(captions), "with_negative": len(mine),
                         "share_passing": {k: round(v / max(1, c["audited"]), 3) for k, v in c.items() if k != "audited"},
                         "examples": [[r[0], r[2]] for r in sample]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", help="an earlier commit whose rules to audit beside this checkout's")
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--out", help="also write the results with their provenance to this JSON file")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    captions = [c.strip() for c in FIXTURE.read_text().splitlines() if c.strip()]
    if a.smoke:
        captions, a.examples, a.before = captions[:10], 2, None
    after = negatives(REPO, captions)
    results = {"after": report(after, captions, a.examples)}
    if a.before:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["git", "worktree", "add", "--detach", f"{tmp}/before", a.before], cwd=REPO, check=True,
                           capture_output=True)
            try:
                before = negatives(Path(tmp) / "before", captions)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", f"{tmp}/before"], cwd=REPO, check=True)
        results["before"] = report(before, captions, a.examples)
        # what the checks took away: captions that had a negative of a type before and have none now
        now = {(r[0], r[1]) for r in after if r[3]}
        results["lost"] = {t: [[r[0], r[2]] for r in before if r[3] and r[1] == t and (r[0], t) not in now]
                           for t in ("relation", "attribute", "object", "action")}
    for when, per_type in ((k, v) for k, v in results.items() if k != "lost"):
        print(f"{when}: {len(captions)} COCO-style captions, lexicon filler; audited share passing all checks")
        for neg_type, r in per_type.items():
            print(f"  {neg_type:<10} negatives for {r['with_negative']:>3}/{r['captions']} captions   "
                  f"all checks {r['share_passing'].get('all', 0):.2f}   "
                  + " ".join(f"{k} {v:.2f}" for k, v in r["share_passing"].items() if k != "all"))
    for neg_type, rows in results.get("lost", {}).items():
        for caption, negative in rows:
            print(f"  no {neg_type} negative any more: {caption!r} (was {negative!r})")
    if a.out:
        from compclip.provenance import write_result

        write_result(a.out, results, vars(a))


if __name__ == "__main__":
    main()
