"""Each reader on well-formed and malformed files, with the accounting identity read == kept + quarantined."""

import io
import json
import os
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from compclip.data.manifest import ingest
from compclip.data.records import SourceError, join_under
from compclip.errors import UserError


def jpeg(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, format="JPEG")
    return buf.getvalue()


def corrupt_jpeg() -> bytes:
    return jpeg()[:60]  # a header and nothing else: truncated


def summary_and_quarantine(out: Path):
    s = json.loads((out / "summary.json").read_text())
    q = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    m = pd.read_parquet(out / "manifest.parquet")
    assert s["read"] == s["kept"] + s["quarantined"] == len(m) + len(q)
    assert s["by_reason"] == {r: sum(e["reason"] == r for e in q) for r in {e["reason"] for e in q}}
    return s, q, m


@pytest.fixture
def coco(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    (img / "a.jpg").write_bytes(jpeg())
    (img / "b.jpg").write_bytes(jpeg((0, 0, 200)))
    (img / "bad.jpg").write_bytes(corrupt_jpeg())
    (tmp_path / "secret.jpg").write_bytes(jpeg())
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                   {"id": 3, "file_name": "bad.jpg"}, {"id": 4, "file_name": "missing.jpg"},
                   {"id": 5, "file_name": "../secret.jpg"}, {"id": 6}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "a red square"},
            {"id": 11, "image_id": 1, "caption": "  a   red square "},  # same pair after whitespace: duplicate
            {"id": 12, "image_id": 2, "caption": "a blue square"},
            {"id": 12, "image_id": 2, "caption": "another caption"},  # duplicate id
            {"id": 13, "image_id": 3, "caption": "corrupt"},
            {"id": 14, "image_id": 4, "caption": "missing"},
            {"id": 15, "image_id": 5, "caption": "escapes"},
            {"id": 16, "image_id": 2, "caption": "   "},
            {"id": 17, "image_id": 2, "caption": "word " * 70},
            {"id": 18, "image_id": 2},  # missing key
            {"id": 19, "image_id": 6, "caption": "image entry lacks file_name"},
            {"id": 20, "image_id": 99, "caption": "unknown image"},
            {"id": 21, "image_id": 2, "caption": 42},
        ],
    }
    ann = tmp_path / "captions_train2017.json"
    ann.write_text(json.dumps(data))
    return ann, img


def test_coco_every_reason_and_identity(coco, tmp_path):
    ann, img = coco
    ingest([(ann, img, None)], [], [], tmp_path / "out", max_caption_words=64, max_quarantine_fraction=1.0)
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert s["read"] == 13 and s["kept"] == 2
    assert sorted(m["sample_id"]) == ["coco:10", "coco:12"]
    assert set(m["split"]) == {"train"}  # from the file name captions_train2017.json
    reasons = {e["key"]: e["reason"] for e in q}
    assert reasons == {"11": "duplicate", "12": "duplicate", "13": "corrupt_image", "14": "missing_image",
                       "15": "path_outside_root", "16": "empty_caption", "17": "caption_too_long",
                       "annotations[9]": "malformed_record", "19": "malformed_record", "20": "malformed_record",
                       "21": "malformed_record"}
    assert all(e["file"] == str(ann) and e["source"] == "coco" for e in q)


def test_not_json_stops_with_the_file_name(tmp_path):
    bad = tmp_path / "captions_val2014.json"
    bad.write_text("this is not json {")
    with pytest.raises(SourceError, match=str(bad) + ": not valid JSON"):
        ingest([(bad, tmp_path, None)], [], [], tmp_path / "out")
    wrong = tmp_path / "captions_val2015.json"
    wrong.write_text("[]")
    with pytest.raises(SourceError, match="expected an object"):
        ingest([(wrong, tmp_path, None)], [], [], tmp_path / "out")


def test_split_must_be_known(tmp_path, coco):
    ann, img = coco
    odd = tmp_path / "my_annotations.json"
    odd.write_text(ann.read_text())
    with pytest.raises(SourceError, match="set `split`"):
        ingest([(odd, img, None)], [], [], tmp_path / "out")
    ingest([(odd, img, "val")], [], [], tmp_path / "out", max_quarantine_fraction=1.0)
    assert set(pd.read_parquet(tmp_path / "out/manifest.parquet")["split"]) == {"val"}


def test_same_image_in_two_splits_is_quarantined(tmp_path, coco):
    ann, img = coco
    other = tmp_path / "captions_val2017.json"
    (img / "c.jpg").write_bytes(jpeg((0, 200, 0)))
    other.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "c.jpg"}],
                                 "annotations": [{"id": 500, "image_id": 1, "caption": "a red thing"},
                                                 {"id": 501, "image_id": 2, "caption": "a green thing"}]}))
    ingest([(ann, img, None), (other, img, None)], [], [], tmp_path / "out", max_quarantine_fraction=1.0)
    _, q, _ = summary_and_quarantine(tmp_path / "out")
    assert {e["key"]: e["reason"] for e in q}["500"] == "image_in_two_splits"


def write_vg(root: Path, version: str = "1.4"):
    """A VG folder in the 1.2+ field names, or 1.0's (`id` for images and regions, `image` for a region's image)."""
    (root / "VG_100K").mkdir(parents=True)
    (root / "VG_100K" / "1.jpg").write_bytes(jpeg())  # 16 x 16
    (root / "VG_100K" / "2.jpg").write_bytes(corrupt_jpeg())
    image_id, region_id, region_image = ("id", "id", "image") if version == "1.0" else ("image_id", "region_id", "image_id")
    (root / "image_data.json").write_text(json.dumps([
        {image_id: 1, "url": "https://x/rak248/VG_100K/1.jpg", "width": 16, "height": 16},
        {image_id: 2, "url": "https://x/rak248/VG_100K/2.jpg", "width": 16, "height": 16},
        {image_id: 3, "url": "https://x/../../3.jpg", "width": 16, "height": 16}]))

    def region(rid, img, phrase, *box):
        return {region_id: rid, region_image: img, "phrase": phrase, **dict(zip(("x", "y", "width", "height"), box))}

    (root / "region_descriptions.json").write_text(json.dumps([
        {"id": 1, "regions": [
            region(1, 1, "a red square", 0, 0, 8, 8),
            region(2, 1, "", 0, 0, 8, 8),
            region(3, 1, "no box", 0, 0),
            region(4, 1, "starts left of the image", -2, 0, 8, 8),
            region(5, 7, "unknown image", 0, 0, 8, 8),
            region(8, 1, "ends past the right edge", 10, 4, 9, 20),
            region(9, 1, "wholly outside", 16, 0, 5, 5),
            region(10, 1, "empty", 3, 3, 0, 4)]},
        {"id": 2, "regions": [region(6, 2, "corrupt", 0, 0, 8, 8)]},
        {"id": 3, "regions": [region(7, 3, "escapes", 0, 0, 8, 8)]},
        {"id": 4}]))


@pytest.mark.parametrize("version", ["1.4", "1.0"])
def test_vg_reader_both_releases_and_boxes_clipped_to_the_image(tmp_path, version):
    write_vg(tmp_path / "vg", version)
    ingest([], [tmp_path / "vg"], [], tmp_path / "out", max_quarantine_fraction=1.0)
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert s["read"] == 11 and s["kept"] == 3
    boxes = {r.caption: (r.bbox_x, r.bbox_y, r.bbox_w, r.bbox_h) for r in m.itertuples()}
    assert boxes == {"a red square": (0, 0, 8, 8),
                     "starts left of the image": (0, 0, 6, 8),  # x -2..6 -> 0..6
                     "ends past the right edge": (10, 4, 6, 12)}  # x 10..19 -> 10..16, y 4..24 -> 4..16
    assert s["adjusted"] == {"box_clipped": 2}
    assert s["by_origin"][f"vg {tmp_path / 'vg'}"]["adjusted"] == {"box_clipped": 2}
    assert m["image_path"].str.endswith("vg/VG_100K/1.jpg").all() and set(m["image_id"]) == {"1"}
    reasons = {e["key"]: e["reason"] for e in q}
    assert reasons == {"2": "empty_caption", "3": "malformed_record", "5": "malformed_record",
                       "9": "malformed_record", "10": "malformed_record", "6": "corrupt_image",
                       "7": "path_outside_root", "[3]": "malformed_record"}
    detail = {e["key"]: e["detail"] for e in q}
    assert "no area inside the 16x16 image" in detail["9"] and "empty size" in detail["10"]


def add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_cc3m_reader(tmp_path):
    shards = tmp_path / "cc3m"
    shards.mkdir()
    with tarfile.open(shards / "00000.tar", "w") as tar:
        add(tar, "000000000.jpg", jpeg())
        add(tar, "000000000.txt", b"a red square")
        add(tar, "000000000.json", json.dumps({"caption": "a red square", "key": "000000000"}).encode())
        add(tar, "000000001.jpg", corrupt_jpeg())
        add(tar, "000000001.txt", b"corrupt")
        add(tar, "000000002.txt", b"no image")
        add(tar, "000000003.jpg", jpeg())
        add(tar, "000000003.json", json.dumps({"caption": "caption from json"}).encode())
        add(tar, "000000004.jpg", jpeg())
        add(tar, "000000004.txt", b"")
        add(tar, "000000005.jpg", jpeg())
        add(tar, "000000005.json", b"not json")
    ingest([], [], [shards], tmp_path / "out", split_fractions={"val": 0.0, "test": 0.0},
           max_quarantine_fraction=1.0)
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert s["read"] == 6 and s["kept"] == 2
    assert sorted(m["caption"]) == ["a red square", "caption from json"]
    shard = f"{shards}/00000"  # keys restart in every img2dataset folder: the record key names the shard
    assert {e["key"]: e["reason"] for e in q} == {
        f"{shard}/000000001": "corrupt_image", f"{shard}/000000002": "missing_image",
        f"{shard}/000000004": "empty_caption", f"{shard}/000000005": "malformed_record"}
    assert sorted(m["sample_id"]) == [f"cc3m:{shard}/000000000", f"cc3m:{shard}/000000003"]
    # the manifest path opens the image inside the shard
    from compclip.training.data import load_image
    assert load_image(next(m.itertuples())).size == (16, 16)


def test_cc3m_not_a_tar(tmp_path):
    (tmp_path / "00000.tar").write_text("plain text")
    with pytest.raises(SourceError, match="00000.tar: not a tar archive"):
        ingest([], [], [tmp_path / "00000.tar"], tmp_path / "out")


def write_shard(path: Path, n: int, start: int = 0) -> None:
    with tarfile.open(path, "w") as tar:  # img2dataset: keys continue across the shards of one folder
        for i in range(start, start + n):
            add(tar, f"{i:09d}.jpg", jpeg((10 * i, 0, 0)))
            add(tar, f"{i:09d}.txt", f"caption {i}".encode())


def test_cc3m_shard_cut_inside_a_member_is_counted_and_the_other_shards_kept(tmp_path):
    shards = tmp_path / "cc3m"
    shards.mkdir()
    write_shard(shards / "00000.tar", 3)
    write_shard(shards / "00001.tar", 3, start=3)
    whole = (shards / "00001.tar").read_bytes()
    (shards / "00001.tar").write_bytes(whole[:512 * 5 + 100])  # inside the 2nd sample's image
    ingest([], [], [shards], tmp_path / "out", split_fractions={"val": 0.0, "test": 0.0},
           max_quarantine_fraction=1.0)
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert len(m) == 4  # 3 of the whole shard + the cut shard's first sample
    cut = [e for e in q if e["reason"] in ("truncated_shard", "corrupt_image")]
    assert any(e["reason"] == "truncated_shard" and e["file"].endswith("00001.tar") for e in cut)


def test_cc3m_shard_cut_between_members_is_reported(tmp_path):
    shards = tmp_path / "cc3m"
    shards.mkdir()
    write_shard(shards / "00000.tar", 3)
    with tarfile.open(shards / "00000.tar") as tar:
        members = tar.getmembers()
    end_of_sample_2 = members[4].offset  # header of the 3rd sample's image
    (shards / "00000.tar").write_bytes((shards / "00000.tar").read_bytes()[:end_of_sample_2])
    ingest([], [], [shards], tmp_path / "out", split_fractions={"val": 0.0, "test": 0.0},
           max_quarantine_fraction=1.0)
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert len(m) == 2
    assert [e["reason"] for e in q] == ["truncated_shard"] and "no end-of-archive marker" in q[0]["detail"]


def test_cc3m_hash_in_a_folder_name_and_non_utf8_caption(tmp_path):
    shards = tmp_path / "run#2"
    shards.mkdir()
    with tarfile.open(shards / "00000.tar", "w") as tar:
        add(tar, "000000000.jpg", jpeg())
        add(tar, "000000000.txt", b"a red square")
        add(tar, "000000001.jpg", jpeg())
        add(tar, "000000001.txt", b"caf\xe9 latte")  # latin-1, not UTF-8
    ingest([], [], [shards], tmp_path / "out", split_fractions={"val": 0.0, "test": 0.0},
           max_quarantine_fraction=1.0)
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert list(m["caption"]) == ["a red square"]
    assert [(e["reason"], "not valid UTF-8" in e["detail"]) for e in q] == [("malformed_record", True)]


def test_symlink_out_of_the_data_root_is_quarantined(tmp_path, coco):
    ann, img = coco
    (img / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    data = json.loads(ann.read_text())
    data["images"].append({"id": 7, "file_name": "link.jpg"})
    data["annotations"].append({"id": 30, "image_id": 7, "caption": "through a symlink"})
    ann.write_text(json.dumps(data))
    ingest([(ann, img, None)], [], [], tmp_path / "out", max_caption_words=64, max_quarantine_fraction=1.0)
    _, q, _ = summary_and_quarantine(tmp_path / "out")
    assert {e["key"]: e["reason"] for e in q}["30"] == "path_outside_root"


def test_quarantine_is_byte_identical_across_runs(tmp_path, coco):
    ann, img = coco
    for out in ("a", "b"):
        ingest([(ann, img, None)], [], [], tmp_path / out, max_caption_words=64, max_quarantine_fraction=1.0)
    a, b = ((tmp_path / o / "quarantine.jsonl").read_bytes() for o in ("a", "b"))
    assert a == b and b" at 0x" not in a


def test_cc3m_two_img2dataset_folders_with_the_same_keys_are_both_kept(tmp_path):
    for folder in ("run_a", "run_b"):
        (tmp_path / folder).mkdir()
    write_shard(tmp_path / "run_a/00000.tar", 3)
    with tarfile.open(tmp_path / "run_b/00000.tar", "w") as tar:  # keys restart at 000000000
        for i in range(3):
            add(tar, f"{i:09d}.jpg", jpeg((0, 10 * i + 5, 0)))
            add(tar, f"{i:09d}.txt", f"another caption {i}".encode())
        add(tar, "000000003.jpg", jpeg((10, 0, 0)))  # the same bytes and caption as run_a's 000000001
        add(tar, "000000003.txt", b"caption 1")
    ingest([], [], [tmp_path / "run_a", tmp_path / "run_b"], tmp_path / "out",
           split_fractions={"val": 0.0, "test": 0.0})
    s, q, m = summary_and_quarantine(tmp_path / "out")
    assert s["kept"] == 6 and m["sample_id"].is_unique
    assert [(e["key"], e["reason"]) for e in q] == [(f"{tmp_path}/run_b/00000/000000003", "duplicate")]
    assert "same bytes" in q[0]["detail"]
    assert {o: t["kept"] for o, t in s["by_origin"].items()} == {f"cc3m {tmp_path}/run_a": 3,
                                                                f"cc3m {tmp_path}/run_b": 3}


def test_a_source_that_keeps_nothing_fails_naming_it_and_its_reasons(tmp_path, coco):
    ann, img = coco
    (tmp_path / "vg").mkdir()
    (tmp_path / "vg/image_data.json").write_text(json.dumps([{"image_id": 1, "url": "https://x/VG_100K/1.jpg"}]))
    (tmp_path / "vg/region_descriptions.json").write_text(json.dumps(
        [{"id": 1, "regions": [{"rid": 1, "img": 1, "text": "a field name this reader does not know"}] * 3}]))
    with pytest.raises(UserError) as e:
        ingest([(ann, img, None)], [tmp_path / "vg"], [], tmp_path / "out", max_quarantine_fraction=0.95)
    message = str(e.value)
    assert f"vg {tmp_path / 'vg'}: kept 0 of 3 records (100% quarantined; top reasons: malformed_record 3)" in message
    assert f"{tmp_path / 'out' / 'quarantine.jsonl'}" in message and "coco" not in message.split("Limit")[0]
    _, q, _ = summary_and_quarantine(tmp_path / "out")  # written before failing, for the user to read
    assert sum(e["source"] == "vg" for e in q) == 3


def test_a_mostly_quarantined_source_fails_above_the_limit_only(tmp_path, coco):
    ann, img = coco  # 2 of 13 records kept: 85% quarantined
    with pytest.raises(UserError, match=r"kept 2 of 13 records \(85% quarantined; top reasons: malformed_record 4, "
                                        r"duplicate 2, corrupt_image 1\).*max_quarantine_fraction=0.5"):
        ingest([(ann, img, None)], [], [], tmp_path / "out")
    assert ingest([(ann, img, None)], [], [], tmp_path / "ok", max_quarantine_fraction=0.9)["kept"] == 2


def test_an_empty_source_fails(tmp_path):
    empty = tmp_path / "captions_train2017.json"
    empty.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(UserError, match=r"captions_train2017.json: kept 0 of 0 records"):
        ingest([(empty, tmp_path, None)], [], [], tmp_path / "out")


def test_cli_split_per_captions_file(tmp_path, coco, capsys):
    from compclip.cli import main

    ann, img = coco
    odd = tmp_path / "captions_val2017_first100.json"  # the name does not end in captions_<split>.json
    odd.write_text(ann.read_text())
    base = ["ingest", "--out", str(tmp_path / "out"), "--max-quarantine-fraction", "1", "--coco-captions", str(odd),
            "--coco-images", str(img)]
    assert main(base) == 1
    assert "cannot tell the split" in capsys.readouterr().err
    assert main(base + ["--split", "val"]) == 0
    assert set(pd.read_parquet(tmp_path / "out/manifest.parquet")["split"]) == {"val"}
    assert main(base + ["--coco-captions", str(ann), "--coco-images", str(img), "--split", "val"]) == 1
    assert "one --split for each --coco-captions" in capsys.readouterr().err
    assert main(base + ["--coco-captions", str(ann), "--coco-images", str(img), "--split", "test",
                        "--split", "auto"]) == 1
    # the second file repeats the first one's records (same ids), read as train: it keeps nothing
    assert f"coco {ann}: kept 0 of 13 records (100% quarantined" in capsys.readouterr().err


def test_join_under_resolves_folders_per_working_directory(tmp_path, monkeypatch):
    """Folders are resolved once per process (records._real_folder): a relative root must still be read
    against the current directory, and a folder on the way that links out of the root is refused."""
    for name, link_out in (("a", False), ("b", True)):
        here = tmp_path / name
        (here / "root").mkdir(parents=True)
        (here / "outside").mkdir()
        (here / "outside" / "x.jpg").write_bytes(b"x")
        if link_out:
            (here / "root" / "sub").symlink_to(here / "outside")
        else:
            (here / "root" / "sub").mkdir()
            (here / "root" / "sub" / "x.jpg").write_bytes(b"x")
        monkeypatch.chdir(here)
        got = join_under(Path("root"), "sub/x.jpg")
        assert got == (None if link_out else os.path.join("root", "sub", "x.jpg"))
