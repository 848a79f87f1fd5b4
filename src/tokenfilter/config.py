"""Configuration: schema validation with errors a user can act on, and experiment resolution.

The workflow's config is validated against ``workflow/schemas/config.schema.yaml`` before any
job runs. Every error names the key, the bad value and what is allowed. Then the experiment
series (``experiments:``) are resolved into runs, the unit the generic pretraining rules work on
(pypsa-eur's "scenarios as data": a new series is a config edit, not a code change).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from tokenfilter.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path | None = None) -> dict:
    with open(path or SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _with_defaults(validator_class):
    """A validator that fills in ``default`` values of absent properties while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error) -> str:
    """One readable line per schema error: the key, the bad value and what is allowed."""
    key = _key(error.absolute_path)
    value = error.instance
    kind = error.validator
    if kind == "enum":
        return f"config key '{key}': {value!r} is not allowed; allowed values: {error.validator_value}"
    if kind == "type":
        return f"config key '{key}': {value!r} is a {type(value).__name__}; expected {error.validator_value}"
    if kind == "required":
        return f"config key '{key}': {error.message}"
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed)) if isinstance(value, dict) else value
        return f"config key '{key}': unknown key(s) {unknown}; allowed keys: {allowed}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return f"config key '{key}': {value!r} is out of range; must be {op} {error.validator_value}"
    if kind in ("minItems", "maxItems", "uniqueItems", "minProperties"):
        return f"config key '{key}': {value!r} is invalid: {error.message}"
    if kind == "propertyNames":
        return f"config key '{key}': a key name is invalid: {error.message}"
    return f"config key '{key}': {error.message}"


def validate_config(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and check cross-references; returns it.

    Raises :class:`ConfigError` listing every problem found.
    """
    schema = schema or load_schema()
    errors = sorted(_DefaultingValidator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _cross_reference_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _cross_reference_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    ladder = config["ladder"]
    for name, size in ladder.items():
        if size["n_embd"] % size["n_head"]:
            problems.append(f"config key 'ladder.{name}.n_head': {size['n_head']} does not divide n_embd={size['n_embd']}")
        elif (size["n_embd"] // size["n_head"]) % 2:
            problems.append(f"config key 'ladder.{name}.n_head': head size {size['n_embd'] // size['n_head']} must be even for RoPE")
    filters = config["filters"]
    data = config["data"]
    for fname, fspec in filters.items():
        if fspec["kind"] == "truth" and data["source"] != "synthetic":
            problems.append(f"config key 'filters.{fname}.kind': 'truth' needs ground-truth labels, which only "
                            f"data.source 'synthetic' has (data.source is {data['source']!r})")
    if config["filtering"]["filter"] not in filters:
        problems.append(f"config key 'filtering.filter': {config['filtering']['filter']!r} is not a filter; "
                        f"defined filters: {sorted(filters)}")
    for series, spec in config["experiments"].items():
        for size in spec["sizes"]:
            if size not in ladder:
                problems.append(f"config key 'experiments.{series}.sizes': {size!r} is not a ladder size; "
                                f"ladder sizes: {list(ladder)}")
        for variant, overrides in (spec.get("variants") or {}).items():
            name = overrides.get("filter")
            if name is not None and name not in filters:
                problems.append(f"config key 'experiments.{series}.variants.{variant}.filter': {name!r} is not a "
                                f"filter; defined filters: {sorted(filters)}")
    problems += _arm_setting_problems(config)
    if data["source"] in ("huggingface", "files"):
        if data["source"] not in data:
            problems.append(f"config key 'data.{data['source']}': required when data.source is {data['source']!r}")
        missing = [d for d in ("forget", "retain_near", "retain_far") if d not in data.get("eval_text", {})]
        if missing:
            problems.append(f"config key 'data.eval_text': real corpora need held-out eval text for {missing}")
        for domain, spec in data.get("eval_text", {}).items():
            if spec["source"] not in spec:
                problems.append(f"config key 'data.eval_text.{domain}.{spec['source']}': required when its source "
                                f"is {spec['source']!r}")
    if config["tokenizer"]["kind"] == "pretrained" and not config["tokenizer"].get("name"):
        problems.append("config key 'tokenizer.name': required when tokenizer.kind is 'pretrained'")
    for role, series in config["analysis"]["scorecard"].items():
        if series is not None and series not in config["experiments"]:
            problems.append(f"config key 'analysis.scorecard.{role}': {series!r} is not a series; "
                            f"series: {list(config['experiments'])}")
    fit = config["analysis"].get("fit_sizes")
    if fit:
        problems += [f"config key 'analysis.fit_sizes': {s!r} is not a ladder size" for s in fit if s not in ladder]
    return problems


def _arm_setting_problems(config: dict[str, Any]) -> list[str]:
    """Label noise and delayed start are token-level modifiers (paper §6.1, App B.5)."""
    from tokenfilter.experiments import filtering_settings, series_runs

    problems = []
    for series in config["experiments"]:
        for run in series_runs(config, series):
            if run.arm != "document":
                continue
            settings = filtering_settings(config, run)
            for key in ("noise", "delay"):
                if settings.get(key):
                    problems.append(f"config key 'experiments.{series}' (variant {run.variant!r}): {key}="
                                    f"{settings[key]} applies to token arms only; the document arm needs {key}: 0")
    return problems


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file (for use outside Snakemake, e.g. tests and the CLI)."""
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return validate_config(config)
