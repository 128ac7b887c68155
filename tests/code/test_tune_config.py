"""The search space and the tune/register sections come from params.yaml and are checked like every
section: a typo in a tuned key is a config error naming it."""

import pytest
import yaml

from compclip.config import ConfigError, load_params, override
from compclip.tuning.space import for_recipe
from tests.conftest import REPO


def params_with(tmp_path, edit):
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(p)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


@pytest.mark.parametrize("key, message", [
    ("loss.ce_clip.imc_weigt", "tune.space: Value error, 'loss.ce_clip.imc_weigt': no such key"),
    ("loss.mask_invalid", "not a number"),
    ("train.max_steps", "not an optimisation setting"),
    ("model.name", "tunable keys start with loss. or train."),
])
def test_a_bad_tuned_key_is_a_config_error_naming_it(tmp_path, key, message):
    path = params_with(tmp_path, lambda p: p["tune"]["space"].update({key: {"low": 0.1, "high": 1.0}}))
    with pytest.raises(ConfigError) as e:
        load_params(path)
    assert message in str(e.value) and key in str(e.value)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["tune"].update(methods=["ce_clipp"]), "tune.methods: ['ce_clipp'] are not keys of `methods`"),
    (lambda p: p["tune"].update(val=p["evaluate"]["sugarcrepe"]), "must never see the test split"),
    (lambda p: p["tune"]["space"].update({"train.lr": {"low": 0.0, "high": 1.0, "log": True}}), "log scale needs low > 0"),
    (lambda p: p["tune"]["space"].update({"train.lr": {"low": 1.0, "high": 0.5}}), "must be below high"),
    (lambda p: p["train"].update(use_tuned=True) or p.pop("tune"), "train.use_tuned needs a `tune` section"),
    (lambda p: p["register"].update(candidate="nope"), "register.candidate 'nope'"),
])
def test_tune_and_register_sections_are_validated(tmp_path, edit, message):
    with pytest.raises(ConfigError) as e:
        load_params(params_with(tmp_path, edit))
    assert message in str(e.value)


def test_each_method_is_tuned_only_on_the_keys_its_run_reads():
    p = load_params(REPO / "params.yaml")
    assert set(for_recipe(p.tune.space, {"ce_clip": 1.0})) == {
        "loss.ce_clip.imc_weight", "loss.ce_clip.cmr_weight", "loss.ce_clip.upper_bound", "train.lr"}
    combined = set(for_recipe(p.tune.space, p.methods["combined"]))
    assert {"loss.clear_glass.alpha", "loss.hard_positive.positive_ratio"} <= combined


def test_override_sets_dotted_keys_and_validates_them():
    p = load_params(REPO / "params.yaml")
    q = override(p, {"loss.ce_clip.imc_weight": 0.5, "train.lr": 0.002})
    assert (q.loss.ce_clip.imc_weight, q.train.lr, p.loss.ce_clip.imc_weight) == (0.5, 0.002, 0.2)
    with pytest.raises(ConfigError, match="loss.ce_clip.imc_weight"):
        override(p, {"loss.ce_clip.imc_weight": -1.0})
    with pytest.raises(ConfigError, match="no such key"):
        override(p, {"loss.ce_clip.nope": 1.0})
