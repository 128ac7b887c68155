"""The shapes world's truth oracle over its scenes.jsonl: is a text true of the scene an image shows, and
negatives made from the scene graph itself."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from compclip.data.perturb import false_attribute, false_relation
from compclip.data.world import Scene, SceneObject, Vocabulary, parse_caption, render_caption
from compclip.hashing import stable_int
from compclip.names import PLACEHOLDER, SCENE_GRAPH_RULES


class SceneChecker:
    """Shapes world only: is a negative false in the scene its image shows?"""

    def __init__(self, scenes_file: Path):
        root = Path(scenes_file).parent
        self.scenes: dict[str, Scene] = {}
        values = defaultdict(set)
        with open(scenes_file) as f:
            for line in f:
                rec = json.loads(line)
                objs = tuple(SceneObject(o["shape"], o["color"], o["size"], o["pattern"], o["row"], o["col"])
                             for o in rec["objects"])
                self.scenes[os.path.abspath(root / rec["image_path"])] = Scene(objs)
                for o in rec["objects"]:
                    for k in ("shape", "color", "size", "pattern"):
                        values[k].add(o[k])
        self.vocab = Vocabulary(*(tuple(sorted(values[k])) for k in ("shape", "color", "size", "pattern")))

    def exact(self, image_path: str, caption: str, seed: int, sample_id: str) -> list[tuple[str, str, str, int]]:
        """Negatives made from the scene graph itself: a false relation, a false attribute.
        (negative, neg_type, rule, valid) rows; valid=0 when the caption is not of the world's grammar."""
        scene = self.scenes.get(os.path.abspath(image_path))
        d = parse_caption(caption, self.vocab) if scene is not None else None
        rng = np.random.default_rng(stable_int(f"{seed}|{sample_id}"))
        rows = []
        makers = {"scene_graph_relation": lambda: false_relation(d, scene, rng),
                  "scene_graph_attribute": lambda: false_attribute(d, self.vocab, scene, rng)}
        for rule, neg_type in SCENE_GRAPH_RULES.items():
            neg = makers[rule]() if d is not None else None
            rows.append((render_caption(neg), neg_type, rule, 1) if neg else (PLACEHOLDER, neg_type, rule, 0))
        return rows

    def verdict(self, image_path: str, text: str) -> str:
        scene = self.scenes.get(os.path.abspath(image_path))
        if scene is None:
            return "no_scene"
        d = parse_caption(text, self.vocab)
        if d is None:
            return "unparseable"
        return "true" if d.is_true_in(scene) else "false"
