"""`compclip ingest` on the tiny world, and its errors."""

import json

import pytest

from compclip.cli import main


def test_cli_ingest_all_sources(world, tmp_path, capsys):
    p, manifest = world
    s = p.synth.out_dir
    args = ["ingest", "--out", str(tmp_path / "out"), "--vg-dir", str(s / "vg"), "--cc3m", str(s / "cc3m")]
    for split in ("train", "test"):
        args += ["--coco-captions", str(s / f"coco/annotations/captions_{split}.json"),
                 "--coco-images", str(s / "coco" / split)]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["read"] == summary["kept"] + summary["quarantined"]
    assert set(summary["by_source"]) == {"coco", "vg", "cc3m"}
    expected_coco = (p.synth.scenes.train + p.synth.scenes.test) * p.synth.captions_per_image
    assert summary["by_source"]["coco"] == expected_coco


def test_cli_ingest_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "captions_train.json"
    bad.write_text("{nope")
    assert main(["ingest", "--out", str(tmp_path / "o"), "--coco-captions", str(bad),
                 "--coco-images", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: not valid JSON" in err and "Traceback" not in err
    assert main(["ingest", "--out", str(tmp_path / "o"), "--coco-captions", str(bad)]) == 1
    assert "one --coco-images for each --coco-captions" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], "0 is below 1"), (["--bootstrap-samples", "many"], "'many' is not a whole number"),
    (["--device", "gpu0"], "expected auto, cpu, mps, cuda or cuda:N")])
def test_evaluate_numeric_options_are_validated(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "sugarcrepe", "--data", "d", "--images", "i", "--model", "m", "--out", "o", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
