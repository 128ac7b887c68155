from pathlib import Path

import pytest
import yaml

from compclip.config import ConfigError, load_params

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, mutate):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repo_params_load():
    p = load_params(REPO / "params.yaml")
    assert set(p.methods) == {"clip", "negclip", "ce_clip", "hard_positive", "clear_glass", "combined"}
    assert p.recipe("combined") == {"ce_clip": 1.0, "hard_positive": 0.5, "clear_glass": 0.5}
    assert p.synth.scenes.test > 0 and p.pretrain is not None


def test_method_with_unknown_term_or_unknown_method(tmp_path):
    path = write(tmp_path, lambda r: r["methods"].update(mine={"ce_clip": 1.0, "sigclip": 0.5}))
    with pytest.raises(ConfigError, match=r"methods.*'mine'.*sigclip"):
        load_params(path)
    with pytest.raises(ConfigError, match="no method 'nope'"):
        load_params(REPO / "params.yaml").recipe("nope")


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, lambda r: r["train"].update(batchsize=3))
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert str(path) in str(e.value) and "train.batchsize: unknown key" in str(e.value)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, lambda r: r["train"].update(batch_size="lots"))
    with pytest.raises(ConfigError, match=r"train\.batch_size: .*integer.*'lots'"):
        load_params(path)


def test_out_of_range_and_bad_enum(tmp_path):
    path = write(tmp_path, lambda r: (r["train"].update(precision="fp8"), r["synth"]["scenes"].update(test=0)))
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert "train.precision" in str(e.value) and "synth.scenes.test" in str(e.value)


def test_holdout_must_use_vocabulary(tmp_path):
    path = write(tmp_path, lambda r: r["synth"]["holdout"].update(attribute_object=[["teal", "circle"]]))
    with pytest.raises(ConfigError, match="teal"):
        load_params(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_unknown_training_negative_rule_and_benchmark_positive_rule(tmp_path):
    path = write(tmp_path, lambda r: (r["loss"].update(negative_rules=["swap_nouns", "swap_verbs"]),
                                      r["benchmarks"].update(positive_rules=["converse", "swap_and"])))
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert "loss.negative_rules" in str(e.value) and "swap_verbs" in str(e.value)
    assert "benchmarks.positive_rules" in str(e.value) and "converse" in str(e.value)


@pytest.mark.parametrize("section,key,value,match", [
    ("train", "beta1", 1.5, "train.beta1"),
    ("train", "beta2", -0.1, "train.beta2"),
    ("train", "eps", 0, "train.eps"),
    ("train", "device", "cdua", "expected auto, cpu, mps, cuda or cuda:N"),
    ("evaluate", "recall_at", [0, 5], "evaluate.recall_at.0"),
    ("evaluate", "recall_at", [], "evaluate.recall_at"),
])
def test_out_of_range_settings_are_refused(tmp_path, section, key, value, match):
    path = write(tmp_path, lambda r: r[section].update({key: value}))
    with pytest.raises(ConfigError, match=match):
        load_params(path)


def test_negative_loss_weight_is_refused(tmp_path):
    path = write(tmp_path, lambda r: r["methods"].update(bad={"clip": -1.0}))
    with pytest.raises(ConfigError, match="methods.bad.clip"):
        load_params(path)


def test_duplicate_key_is_refused_with_its_line(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("seed: 42\n", "seed: 42\nseed: 7\n")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        load_params(path)


def test_missing_section_is_named_without_dumping_the_params(tmp_path):
    path = write(tmp_path, lambda r: r.pop("train"))
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert "train: missing (required)" in str(e.value) and "synth" not in str(e.value)


def test_config_imports_no_implementation_module():
    import subprocess
    import sys

    # loading and validating params.yaml (rule names, relations, loss terms) imports nothing else of compclip
    code = ("import sys, compclip.config as c; c.load_params('params.yaml'); bad = [m for m in sys.modules "
            "if m.startswith('compclip.') and m not in ('compclip.config', 'compclip.names', 'compclip.errors')]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_method_overrides_apply_to_their_method_only(tmp_path):
    path = write(tmp_path, lambda r: r.update(method_overrides={
        "negclip": {"loss.negative_rules": ["swap_nouns", "sc_swap_att"], "train.max_steps": 7}}))
    p = load_params(path)
    negclip = p.for_method("negclip")
    assert negclip.loss.negative_rules == ["swap_nouns", "sc_swap_att"] and negclip.train.max_steps == 7
    assert negclip.train.lr == p.train.lr  # everything else as params.yaml says
    clip = p.for_method("clip")
    assert clip is p and clip.loss.negative_rules == p.loss.negative_rules
    with pytest.raises(ConfigError, match="no method 'nope'"):
        p.for_method("nope")


@pytest.mark.parametrize("overrides, match", [
    ({"negclip": {"evaluate.batch_size": 8}}, r"method_overrides.negclip: \['evaluate.batch_size'\]: only loss"),
    ({"negclip": {"train.max_stepz": 8}}, r"method_overrides.negclip: override 'train.max_stepz': no such key"),
    ({"negclip": {"loss.negative_rules": ["swap_verbs"]}}, r"method_overrides.negclip: .*swap_verbs"),
    ({"negclip": {"train.max_steps": -1}}, r"method_overrides.negclip: .*max_steps"),
])
def test_bad_method_overrides_are_named(tmp_path, overrides, match):
    path = write(tmp_path, lambda r: r.update(method_overrides=overrides))
    with pytest.raises(ConfigError, match=match):
        load_params(path)


def test_overrides_of_a_method_taken_out_of_methods_are_ignored_with_a_warning(tmp_path, caplog):
    """A user narrows `methods` (by hand, or a flow's -S ~methods.x) and leaves the section as it was."""
    def narrow(r):
        r["methods"] = {"clip": {"clip": 1.0}, "ce_clip": {"ce_clip": 1.0}}
        r["method_overrides"] = {"negclip": {"train.max_steps": 7}}
    with caplog.at_level("WARNING"):
        p = load_params(write(tmp_path, narrow))
    assert "method_overrides for ['negclip'], which `methods` does not define: ignored" in caplog.text
    assert p.for_method("clip").train.max_steps == p.train.max_steps
