"""dvc.yaml cannot go stale: every stage depends on exactly the project code it runs and declares no
execution-only param; modules import only downward. (The params each stage really reads are checked
against dvc.yaml by tracing a real `dvc repro`: tests/integration/test_dvc_repro.py.)"""

from pathlib import Path

import yaml

from compclip.config import EXECUTION_ONLY, TUNE_EXECUTION_ONLY
from tests.dvc_deps import REPO, closure, code_deps, direct_imports, stage_module

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def body(stage: dict) -> dict:
    return stage.get("do", stage)  # foreach stages keep their template under `do`


def test_each_stage_depends_on_exactly_the_code_it_runs():
    problems = []
    for name, stage in STAGES.items():
        declared = {d for d in body(stage)["deps"] if "${" not in d}  # templated deps are data
        expected = set(code_deps(stage_module(body(stage)["cmd"])))
        if missing := sorted(expected - declared):
            problems.append(f"{name}: missing {missing}")
        if extra := sorted(declared - expected):
            problems.append(f"{name}: not run by the stage {extra}")
    assert not problems, "dvc.yaml deps out of date (`python -m tests.dvc_deps` prints them):\n" + "\n".join(problems)


def test_no_stage_depends_on_execution_only_params_or_whole_training_sections():
    banned = {"train", "pretrain", "mlflow", "tune"} | {f"{s}.{k}" for s in ("train", "pretrain") for k in EXECUTION_ONLY} \
        | {f"tune.{k}" for k in TUNE_EXECUTION_ONLY}
    for name, stage in STAGES.items():
        declared = {p for p in body(stage).get("params", []) if isinstance(p, str)}
        assert not declared & banned, f"{name}: {sorted(declared & banned)}"
        assert not any(p.startswith("mlflow.") for p in declared), name


def test_compare_follows_methods_without_a_hand_kept_list():
    deps = body(STAGES["compare"])["deps"]
    assert "${evaluate.out_dir}" in deps and not any("/metrics.json" in d for d in deps)
    assert "methods" in body(STAGES["compare"])["params"]


def test_the_closure_follows_function_level_imports_and_leaves_out_what_a_stage_never_imports():
    synth = {p.relative_to(REPO).as_posix() for p in closure("stages.synth")}
    assert "src/compclip/data/render.py" in synth and "src/compclip/names.py" in synth
    assert not any(p.startswith(("src/compclip/training", "src/compclip/models")) for p in synth)
    evaluate = {p.relative_to(REPO).as_posix() for p in closure("stages.evaluate")}
    assert "src/compclip/evaluation/metrics.py" in evaluate and "src/compclip/models/factory.py" in evaluate
    assert "src/compclip/training/trainer.py" not in evaluate  # evaluation does not reach into training
    # data files read through Path(__file__).parent
    assert "src/compclip/text/lexicon/taxonomy.json" in code_deps("stages.concepts")


# package -> the packages it may import (besides itself): config at the bottom, stages and cli at the top
ALLOWED = {
    "names": set(), "errors": set(), "hashing": set(), "cache": set(),
    "config": {"names", "errors"},
    "parallel": {"config", "errors"},
    "data": {"config", "names", "errors", "hashing"},
    "text": {"config", "names", "errors", "hashing", "cache", "data", "parallel"},
    "models": {"config", "names", "errors"},
    "validation": {"config", "names", "errors"},
    "losses": {"config", "names", "errors"},
    "tracking": {"config", "names", "errors", "models"},
    "training": {"config", "names", "errors", "hashing", "data", "text", "models", "losses", "tracking"},
    "evaluation": {"config", "names", "errors", "hashing", "data", "text", "models", "tracking"},
    "tuning": {"config", "names", "errors", "hashing", "data", "models", "losses", "tracking", "training", "provenance",
               "evaluation"},
    "registry": {"config", "names", "errors", "hashing", "data", "text", "models", "tracking", "evaluation",
                 "provenance"},
}


def test_modules_import_only_downward():
    problems = []
    for path in sorted((REPO / "src/compclip").rglob("*.py")):
        rel = path.relative_to(REPO / "src/compclip").with_suffix("").parts
        layer = rel[0]
        if layer not in ALLOWED:  # cli: the top
            continue
        for name in direct_imports(path):
            parts = name.split(".")
            if parts[0] == "tests":
                problems.append(f"{'/'.join(rel)} imports test code {name}")
            if parts[0] != "compclip" or len(parts) < 2:
                continue
            target = parts[1]
            if target != layer and target not in ALLOWED[layer]:
                problems.append(f"{'/'.join(rel)} imports {name}")
    assert not problems, "\n".join(problems)


def test_no_test_fixture_ships_in_the_package():
    assert not list((REPO / "src/compclip").rglob("tiny_mlm.py"))
    assert Path(REPO / "tests/tiny_mlm.py").is_file()
