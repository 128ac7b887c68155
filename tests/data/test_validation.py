"""Great Expectations suites: the real tables pass, a table broken on purpose fails readably."""

import json

import pandas as pd
import pytest

from compclip.text.negatives_table import build_negatives
from compclip.validation.validate import ValidationFailed, validate_tables


@pytest.fixture(scope="module")
def tables(world, tmp_path_factory):
    p, manifest = world
    tmp = tmp_path_factory.mktemp("val")
    # with the scene graph, so the exact scene-graph negatives are validated too
    build_negatives(manifest, p.negatives.model_copy(update={"out_dir": tmp / "neg",
                                                             "scenes": p.synth.out_dir / "scenes.jsonl"}), p.seed)
    return p, manifest, tmp / "neg/negatives.parquet", tmp


def test_generated_tables_pass(tables):
    p, manifest, negatives, tmp = tables
    report = validate_tables(manifest, negatives, None, tmp / "ok", 64, 0.75)
    assert report["success"] and set(report["suites"]) == {"manifest", "negatives"}
    assert (tmp / "ok/gx/uncommitted/data_docs/local_site/index.html").is_file()
    assert json.loads((tmp / "ok/summary.json").read_text())["success"] is True


def test_broken_negatives_fail_with_suite_expectation_and_rows(tables):
    p, manifest, negatives, tmp = tables
    bad = pd.read_parquet(negatives)
    i = bad.index[(bad.rule == "swap_nouns") & (bad.valid == 1)][0]
    bad.loc[i, "negative"] = bad.loc[i, "negative"] + " extra words"  # no longer a permutation
    j = bad.index[bad.valid == 1][5]
    bad.loc[j, "negative"] = bad.loc[j, "caption"]  # equal to its caption
    bad.loc[bad.index[7], "sample_id"] = "coco:does-not-exist"
    path = tmp / "bad.parquet"
    bad.to_parquet(path)
    with pytest.raises(ValidationFailed) as e:
        validate_tables(manifest, path, None, tmp / "bad", 64, 0.75)
    msg = str(e.value)
    assert "suite 'negatives': expect_column_values_to_be_in_set on column 'swap_is_permutation'" in msg
    assert "differs_from_caption" in msg and "sample_in_manifest" in msg and "coco:does-not-exist" in msg
    assert bad.loc[i, "sample_id"] in msg  # the failing row is shown
    assert json.loads((tmp / "bad/summary.json").read_text())["suites"]["negatives"]["failed"] == 3
