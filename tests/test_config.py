"""Config validation: shipped configs validate, defaults fill in, errors name key, value, allowed."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tokenfilter.config import SCHEMA_PATH, load_config, load_schema, validate_config
from tokenfilter.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [p for p in (ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml") if p.exists()]


@pytest.fixture(scope="module")
def raw() -> dict:
    """The default config as written (no defaults filled in)."""
    with open(ROOT / "config" / "config.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture
def cfg(raw) -> dict:
    return copy.deepcopy(raw)


def error_of(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    return str(info.value)


def test_schema_ships_inside_the_package():
    import tokenfilter

    assert SCHEMA_PATH.parent == Path(tokenfilter.__file__).parent / "config"
    assert load_schema()["type"] == "object"
    assert not (ROOT / "workflow" / "schemas").exists()  # one schema, not a copy per place


def test_schema_has_one_top_level_properties_block():
    """The schema once had two top-level `properties:` keys; YAML kept the second, silently
    dropping the first block's descriptions and defaults. The strict loader rejects that."""
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    assert len(re.findall(r"^properties:", text, flags=re.M)) == 1
    documents = load_schema()["properties"]["data"]["properties"]["synthetic"]["properties"]["documents"]
    assert documents["properties"]["median_sentences"]["default"] == 9.0


def test_a_duplicate_key_is_rejected_naming_key_and_line(tmp_path):
    from tokenfilter.config import load_yaml

    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\ntraining:\n  lr: 1\n  threads: 2\n  lr: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert "duplicate key 'lr'" in message and f"{path}:5" in message and "line 3" in message
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        load_config(path)


def test_a_schema_with_a_duplicate_key_is_rejected(tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text("type: object\nproperties:\n  a: {type: integer}\nproperties:\n  b: {type: string}\n")
    with pytest.raises(ConfigError, match="duplicate key 'properties'"):
        load_schema(schema)


def test_defaults_live_in_the_schema_and_fill_the_dataclasses():
    from tokenfilter.config import default_of, section_defaults
    from tokenfilter.data.synthetic.build import SyntheticParams

    params = SyntheticParams.from_config({"n_docs": 5})
    schema_docs = section_defaults("data.synthetic.documents")
    assert params.n_docs == 5 and params.n_eval_docs == default_of("data.synthetic.n_eval_docs")
    assert params.documents.kinds == schema_docs["kinds"]
    assert params.documents.doc_label_min_forget == schema_docs["doc_label_min_forget"]
    with pytest.raises(ConfigError, match="data.synthetic"):
        SyntheticParams.from_config({"n_docs": 0})


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config["data"]["source"] in ("synthetic", "huggingface", "files")
    assert config["experiments"] and config["ladder"]


def test_defaults_are_filled(cfg):
    del cfg["evaluation"]
    del cfg["training"]["snapshots"]
    del cfg["filtering"]["document_threshold"]
    del cfg["data"]["val_fraction"]
    del cfg["seed"]
    del cfg["analysis"]
    del cfg["filters"]
    cfg["filtering"]["filter"] = "truth"  # the default filter source, defined by the defaults
    del cfg["experiments"]["perfect_filter"]  # these name filters the defaults do not define
    del cfg["experiments"]["classifier_filters"]
    given = copy.deepcopy(cfg["tokenizer"])
    out = validate_config(cfg)
    assert out is cfg  # validated in place
    assert cfg["evaluation"]["max_tokens"] == 60000
    assert cfg["evaluation"]["batch_size"] == 16 and cfg["evaluation"]["snapshots"] is True
    assert cfg["training"]["snapshots"] == 4
    assert cfg["training"]["wandb"] is False and cfg["training"]["keep_checkpoints"] is False
    assert cfg["filtering"]["document_threshold"] == 0.5
    assert cfg["filtering"]["noise"] == 0.0 and cfg["filtering"]["delay"] == 0.0
    assert cfg["data"]["val_fraction"] == 0.01
    assert cfg["seed"] == 1337
    assert cfg["analysis"]["fit"] == "power_law"
    assert list(cfg["filters"]) == ["truth"]  # the default filter source ...
    assert cfg["filters"]["truth"]["kind"] == "truth"
    assert cfg["filters"]["truth"]["context_window"] == 8  # ... with its own defaults filled in
    assert cfg["analysis"]["fit_sizes"] is None
    assert all(cfg["tokenizer"][k] == v for k, v in given.items())  # given values are kept


def test_defaults_do_not_leak_between_configs(raw):
    a, b = copy.deepcopy(raw), copy.deepcopy(raw)
    del a["training"]["betas"], b["training"]["betas"]
    validate_config(a)
    validate_config(b)
    a["training"]["betas"].append(0.5)
    assert b["training"]["betas"] == [0.9, 0.95]
    assert load_schema()["properties"]["training"]["properties"]["betas"]["default"] == [0.9, 0.95]


def _set(path: str, value):
    def edit(c):
        *parents, last = path.split(".")
        node = c
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


def _delete(path: str):
    def edit(c):
        *parents, last = path.split(".")
        node = c
        for p in parents:
            node = node[p]
        del node[last]
    return edit


def _files_source(c):
    c["data"]["source"] = "files"
    c["data"]["files"] = [{"glob": "corpus/*.jsonl"}]
    c["data"]["eval_text"] = {d: {"source": "files", "files": [{"glob": f"eval/{d}/*.jsonl"}]}
                              for d in ("forget", "retain_near", "retain_far")}


# (edit, substrings every message must contain: the key path, the bad value, what is allowed)
CASES = {
    "unknown_enum": (_set("data.source", "hf"),
                     ["'data.source'", "'hf'", "synthetic", "huggingface", "files"]),
    "wrong_type": (_set("training.batch_tokens", "big"),
                   ["'training.batch_tokens'", "'big'", "integer"]),
    "bool_is_not_int": (_set("training.batch_tokens", True),
                        ["'training.batch_tokens'", "True", "integer"]),
    "unknown_key": (_set("training.lrr", 0.01),
                    ["'training'", "lrr", "batch_tokens", "warmup_fraction"]),
    "unknown_top_key": (_set("ladders", {}),
                        ["ladders", "'ladder'", "'experiments'"]),
    "missing_required": (_delete("ladder.m.lr"),
                         ["'ladder.m'", "'lr'", "required"]),
    "out_of_range_high": (_set("data.val_fraction", 1.5),
                          ["'data.val_fraction'", "1.5", "<= 1"]),
    "out_of_range_low": (_set("data.val_fraction", -0.1),
                         ["'data.val_fraction'", "-0.1", ">= 0"]),
    "non_positive": (_set("training.micro_batch_size", 0),
                     ["'training.micro_batch_size'", "0", ">= 1"]),
    "unknown_arm": (lambda c: c["experiments"]["main"]["arms"].append("erase"),
                    ["experiments.main.arms", "'erase'", "baseline", "document", "mask", "remove"]),
    "unknown_ladder_size": (lambda c: c["experiments"]["thresholds"]["sizes"].append("xxl"),
                            ["'experiments.thresholds.sizes'", "'xxl'", "ladder sizes", "'xs'", "'l'"]),
    "unknown_filter": (_set("filtering.filter", "sae"),
                       ["'filtering.filter'", "'sae'", "defined filters", "'truth'"]),
    "unknown_variant_filter": (_set("experiments.thresholds.variants.f12.filter", "probe"),
                               ["'experiments.thresholds.variants.f12.filter'", "'probe'", "defined filters",
                                "'truth'"]),
    "n_head_not_dividing": (_set("ladder.s.n_head", 5),
                            ["'ladder.s.n_head'", "5", "does not divide", "n_embd=32"]),
    "odd_head_size": (_set("ladder.s.n_head", 32),
                      ["'ladder.s.n_head'", "head size 1", "even"]),
    "pretrained_without_name": (_set("tokenizer.kind", "pretrained"),
                                ["'tokenizer.name'", "required", "pretrained"]),
    "truth_with_files": (_files_source,
                         ["'filters.truth.kind'", "'truth'", "synthetic", "'files'"]),
    "document_arm_with_noise": (_set("experiments.thresholds.variants.f03.noise", 0.1),
                                ["'experiments.thresholds'", "'f03'", "noise=0.1", "token arms only"]),
    "document_arm_with_delay": (_set("experiments.thresholds.variants.f25.delay", 0.5),
                                ["'experiments.thresholds'", "'f25'", "delay=0.5", "token arms only"]),
    "unknown_series_kind": (_set("experiments.thresholds.kind", "sweep"),
                            ["'experiments.thresholds.kind'", "'sweep'", "'ladder'"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_error_names_key_value_and_allowed(cfg, name):
    edit, needles = CASES[name]
    edit(cfg)
    message = error_of(cfg)
    for needle in needles:
        assert needle in message, f"{name}: {needle!r} missing from:\n{message}"


def test_truth_filter_is_fine_for_synthetic_but_files_needs_eval_text(cfg):
    _files_source(cfg)
    cfg["filters"] = {"sae": {"kind": "truth"}}
    del cfg["data"]["eval_text"]["retain_far"]
    message = error_of(cfg)
    assert "data.eval_text" in message and "retain_far" in message


def test_noise_on_token_arm_only_is_allowed(cfg):
    # The main series has a document arm too, so a noisy default filter needs a token-only series.
    cfg["experiments"] = {"noisy": {"kind": "filter", "arms": ["baseline", "mask", "remove"], "sizes": ["xs"],
                                    "variants": {"n10": {"noise": 0.1}, "d50": {"delay": 0.5}}}}
    cfg.pop("capabilities", None)  # it evaluates the main ladder series, which this config drops
    cfg.pop("robustness", None)
    validate_config(cfg)


def test_all_problems_are_listed(cfg):
    cfg["data"]["source"] = "hf"
    cfg["training"]["batch_tokens"] = "big"
    cfg["data"]["val_fraction"] = 1.5
    message = error_of(cfg)
    assert message.startswith("invalid configuration:")
    for key in ("'data.source'", "'training.batch_tokens'", "'data.val_fraction'"):
        assert key in message
    assert len(re.findall(r"^  config key", message, flags=re.M)) == 3


def test_load_config_rejects_non_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


def test_load_config_reports_errors_from_file(tmp_path, raw):
    bad = copy.deepcopy(raw)
    bad["data"]["source"] = "hf"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'data\.source': 'hf' is not allowed"):
        load_config(path)


def test_canonical_params_do_not_depend_on_key_order():
    from tokenfilter.config import canonical

    a = {"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": 0}}
    b = {"a": {"x": 0, "y": [{"p": 2, "q": 1}]}, "b": 1}
    # Equal as dicts, but their text (what Snakemake compares) differs with key order.
    assert repr(a) != repr(b) and repr(canonical(a)) == repr(canonical(b))


def test_classifier_names_must_exist(cfg):
    cfg["filters"]["classifier"]["classifier"] = "nope"
    cfg["classifiers"]["weak_to_strong"] = {"weak": "context_free", "strong": "missing"}
    message = error_of(cfg)
    assert "'filters.classifier.classifier': 'nope' is not under classifiers.models" in message
    assert "'classifiers.weak_to_strong.weak': 'context_free' is context-free" in message
    assert "'classifiers.weak_to_strong.strong': 'missing' is not under classifiers.models" in message
