"""The concepts step on the tiny world, its validation, and the LLM inferrer against a local server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd

from compclip.text.concepts import LLMInferrer
from compclip.text.concepts_table import build_concepts
from compclip.text.rewriters import OpenAIChatRewriter
from compclip.validation.validate import validate_tables


def test_concepts_tables_and_magic_export(world, tmp_path):
    p, manifest = world
    cfg = p.concepts.model_copy(update={"out_dir": tmp_path / "c", "min_group_size": 3})
    summary = build_concepts(manifest, cfg, p.seed)
    out = tmp_path / "c"
    members = pd.read_parquet(out / "memberships.parquet")
    groups = pd.read_parquet(out / "groups.parquet")
    m = pd.read_parquet(manifest)
    whole = m[m.bbox_x.isna()]["image_path"].nunique()
    assert summary["images"] == whole == summary["images_with_concepts"] + summary["unassigned"]
    assert (groups["images"] >= 3).all() and len(groups) > 5
    assert members.groupby("level1")["split"].nunique().max() == 1  # split by level-1 concept
    assert set(members["level4"]) <= {"shape", "object"}
    edges = pd.read_parquet(out / "edges.parquet")
    assert set(zip(edges.child_level, edges.parent_level)) == {("level1", "level2"), ("level2", "level3"),
                                                               ("level3", "level4")}
    magic = json.loads((out / "magic.json").read_text())
    entry = magic[0]
    assert set(entry) == {"concept", "hard_negative", "train_images", "test_images"}
    image = (entry["train_images"] or entry["test_images"])[0]
    assert {"image", "old_captions", "new_captions", "level1", "level2", "level3", "level4"} <= set(image)
    report = validate_tables(manifest, None, None, tmp_path / "v", 64, 0.75, out, 3, cfg.hard_negative_threshold)
    assert {"concept_groups", "concept_memberships", "concept_hard_negatives"} <= set(report["suites"])


class Levels(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        data = json.dumps({"choices": [{"message": {"content": "Small Red Star => red star => star => shape"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_llm_inferrer_parses_four_levels():
    server = HTTPServer(("127.0.0.1", 0), Levels)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        inf = LLMInferrer(OpenAIChatRewriter(f"http://127.0.0.1:{server.server_port}/v1", "m"))
        assert inf.infer(["a small red star"]) == [("small red star", "red star", "star", "shape")]
    finally:
        server.shutdown()
