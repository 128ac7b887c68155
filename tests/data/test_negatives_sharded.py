"""Negatives sharded by content hash over Dask workers (a local cluster of processes): the table and its
summary are byte-identical to the single-process ones with 1 and 2 workers, and the content-hash cache is
shared (a run on workers fills the cache a later in-process run reads, and the other way round)."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from compclip.config import DaskConfig
from compclip.text.negatives_table import build_negatives

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/coco_style_captions.txt"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def manifest(world, tmp_path_factory):
    """The tiny world's manifest plus real-style COCO captions, some repeated (a repeat is generated once)."""
    p, world_manifest = world
    m = pd.read_parquet(world_manifest)
    real = [line.strip() for line in FIXTURE.read_text().splitlines() if line.strip()]
    extra = pd.DataFrame({"sample_id": [f"coco:{i}" for i in range(2 * len(real))], "caption": real + real,
                          "image_path": [f"coco/{i % len(real)}.jpg" for i in range(2 * len(real))],
                          "split": "train", "bbox_x": float("nan")})
    path = tmp_path_factory.mktemp("sharded") / "manifest.parquet"
    pd.concat([m, extra], ignore_index=True).reindex(columns=m.columns).to_parquet(path, index=False)
    return p, path


def run(p, manifest, out: Path, dask: DaskConfig, **cfg):
    neg = p.negatives.model_copy(update={"out_dir": out, "scenes": p.synth.out_dir / "scenes.jsonl",
                                         "chunk_size": 97, "splits": ["train", "val", "test"], **cfg})
    return build_negatives(manifest, neg, p.seed, dask)


@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_table_is_byte_identical(manifest, tmp_path, workers):
    p, path = manifest
    single = run(p, path, tmp_path / "single", DaskConfig())
    sharded = run(p, path, tmp_path / "sharded", DaskConfig(workers=workers))
    for name in ("negatives.parquet", "summary.json"):
        assert digest(tmp_path / "single" / name) == digest(tmp_path / "sharded" / name), name
    assert single["execution"]["unique_captions_generated"] == sharded["execution"]["unique_captions_generated"] > 0
    assert single["execution"]["cache_hits"] == sharded["execution"]["cache_hits"] > 0  # the repeated real captions
    assert len(sharded["execution"]["peak_rss_mib_per_process"]) == workers  # the work ran on the workers

    # one cache, whoever fills it: the in-process run over the workers' cache generates nothing
    again = run(p, path, tmp_path / "sharded", DaskConfig())
    assert again["execution"]["unique_captions_generated"] == 0
    assert digest(tmp_path / "sharded/negatives.parquet") == digest(tmp_path / "single/negatives.parquet")


def test_sharded_fill_mask_path(manifest, tmp_path):
    """The CE-CLIP path (a fill-mask model, loaded once per worker) is sharded the same way."""
    from tests.tiny_mlm import build_tiny_mlm

    p, path = manifest
    m = pd.read_parquet(path)
    small = tmp_path / "small.parquet"
    m.iloc[::7].to_parquet(small, index=False)
    mlm = build_tiny_mlm(tmp_path / "mlm", m["caption"].tolist()[:400])
    kw = {"filler": "mlm", "mlm_model": mlm, "rules": ["replace_adj", "replace_noun"]}
    run(p, small, tmp_path / "single", DaskConfig(), **kw)
    run(p, small, tmp_path / "sharded", DaskConfig(workers=2), **kw)
    table = pd.read_parquet(tmp_path / "single/negatives.parquet")
    assert (table.filler == "mlm").any() and table.valid.sum() > 0
    assert digest(tmp_path / "single/negatives.parquet") == digest(tmp_path / "sharded/negatives.parquet")


def test_unreachable_scheduler_is_a_clear_error(manifest, tmp_path):
    from compclip.errors import UserError

    p, path = manifest
    with pytest.raises(UserError, match="dask.scheduler 'tcp://127.0.0.1:9'"):
        run(p, path, tmp_path / "x", DaskConfig(scheduler="tcp://127.0.0.1:9", connect_timeout_s=2))
