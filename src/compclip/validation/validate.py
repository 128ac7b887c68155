"""Run the suites with Great Expectations (file context under the report folder, so Data Docs HTML lands
in reports/validation/) and stop on failure with a message naming the suite, the expectation and rows."""

from __future__ import annotations

import json
from pathlib import Path

import great_expectations as gx
import pandas as pd

from compclip.errors import UserError
from compclip.validation.suites import Suite

EXAMPLES = 5


class ValidationFailed(UserError):
    pass


def _describe_failure(suite: Suite, result) -> str:
    cfg = result.expectation_config
    column = cfg.kwargs.get("column")
    res = result.result or {}
    idx = (res.get("partial_unexpected_index_list") or [])[:EXAMPLES]
    show = [c for c in suite.show if c in suite.frame.columns]
    rows = suite.frame.loc[idx, show + ([column] if column and column not in show else [])] if idx else None
    head = (f"suite {suite.name!r}: {cfg.type} on column {column!r} failed for {res.get('unexpected_count', '?')} of "
            f"{res.get('element_count', '?')} rows")
    return head + (f"; first rows:\n{rows.to_string()}" if rows is not None else "")


def _get_or_add(get, add, name):
    try:
        return get(name)
    except (LookupError, ValueError, gx.exceptions.DataContextError):
        return add(name)


def run_suites(suites: list[Suite], out_dir: Path) -> dict:
    """Validate every suite (all of them, even after a failure) and build Data Docs; raise if any failed."""
    out_dir = Path(out_dir)
    ctx = gx.get_context(mode="file", project_root_dir=str(out_dir))
    source = ctx.data_sources.add_or_update_pandas("compclip")
    failures, summary = [], {}
    for suite in suites:
        asset = _get_or_add(source.get_asset, source.add_dataframe_asset, suite.name)
        batch = _get_or_add(asset.get_batch_definition, asset.add_batch_definition_whole_dataframe, f"{suite.name}-all")
        gx_suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=suite.name))
        for e in suite.expectations:
            gx_suite.add_expectation(e)
        gx_suite.save()
        vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=suite.name, data=batch,
                                                                                 suite=gx_suite))
        checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
            name=suite.name, validation_definitions=[vd], result_format={"result_format": "SUMMARY"},
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")]))
        outcome = checkpoint.run(batch_parameters={"dataframe": suite.frame})
        results = [r for vr in outcome.run_results.values() for r in vr.results]
        failed = [r for r in results if not r.success]
        failures += [_describe_failure(suite, r) for r in failed]
        summary[suite.name] = {"rows": len(suite.frame), "expectations": len(results), "failed": len(failed)}
    docs = next(out_dir.rglob("data_docs/local_site/index.html"), None)
    report = {"success": not failures, "suites": summary, "data_docs": str(docs) if docs else None,
              "failures": failures}
    (out_dir / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    if failures:
        raise ValidationFailed("validation failed:\n" + "\n".join(failures) + f"\nData Docs: {docs}")
    return report


def validate_tables(manifest: Path, negatives: Path | None, positives: Path | None, out_dir: Path,
                    max_words: int, min_similarity: float, concepts: Path | None = None, min_group_size: int = 1,
                    concept_threshold: float = -1.0) -> dict:
    """Suites for every table present; concepts is the concepts stage's folder."""
    from compclip.validation.suites import (concept_negatives_suite, groups_suite, manifest_suite,
                                            memberships_suite, negatives_suite, positives_suite)

    m = pd.read_parquet(manifest)
    ids = set(m["sample_id"])
    suites = [manifest_suite(m, max_words)]
    neg = pd.read_parquet(negatives) if negatives and Path(negatives).exists() else None
    if neg is not None:
        suites.append(negatives_suite(neg, ids, max_words))
    if positives and Path(positives).exists():
        suites.append(positives_suite(pd.read_parquet(positives), ids,
                                      neg if neg is not None else pd.DataFrame(columns=["sample_id", "negative", "valid"]),
                                      min_similarity, max_words))
    if concepts and (Path(concepts) / "groups.parquet").exists():
        c = Path(concepts)
        suites += [groups_suite(pd.read_parquet(c / "groups.parquet"), min_group_size),
                   memberships_suite(pd.read_parquet(c / "memberships.parquet"), set(m["image_path"])),
                   concept_negatives_suite(pd.read_parquet(c / "hard_negatives.parquet"), concept_threshold)]
    return run_suites(suites, out_dir)
