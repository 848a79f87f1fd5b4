"""Configuration: schema validation with errors a user can act on, and experiment resolution.

The workflow's config is validated against ``schema.yaml`` (shipped inside this package, so an
installed package works without the checkout) before any job runs. Every error names the key,
the bad value and what is allowed. The schema is the one place for every default: validation
fills them in, and the parameter dataclasses of the stages are built from the filled config
(:func:`section_defaults`). YAML files are read with duplicate keys rejected: YAML itself keeps
the last of two equal keys silently. The experiment series (``experiments:``) are resolved into
runs in :mod:`tokenfilter.config.experiments` (pypsa-eur's "scenarios as data").
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from tokenfilter.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a mapping with two equal keys, naming the key and line."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"{key_node.start_mark.name}:{line}: duplicate key {key!r} (first at line {seen[key]}); "
                              "YAML would silently keep only the last one")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, rejecting duplicate keys (:class:`ConfigError` names file, line and key)."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def check_config_files(paths: list[str | Path]) -> None:
    """Read every config file with duplicate keys rejected (Snakemake's own loader keeps the last
    of two equal keys silently)."""
    for path in paths:
        load_yaml(path)


def load_schema(path: str | Path | None = None) -> dict:
    """The schema (a private copy: callers may change it)."""
    return copy.deepcopy(_cached_schema(str(path or SCHEMA_PATH)))


@functools.lru_cache(maxsize=4)
def _cached_schema(path: str) -> dict:
    # Parsing the schema takes about half a second; the workflow asks for defaults hundreds of
    # times while it builds the DAG.
    return load_yaml(path)


def default_of(section: str) -> Any:
    """The default the schema declares for the config key at dotted path ``section``."""
    schema = _cached_schema(str(SCHEMA_PATH))
    node: dict = schema
    for part in section.split("."):
        node = _resolve(node, schema)["properties"][part]
    node = _resolve(node, schema)
    if "default" not in node:
        raise KeyError(f"config key '{section}' has no default in the schema")
    return copy.deepcopy(node["default"])


def section_defaults(section: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """``values`` (default: empty) of the config section at dotted path ``section`` (e.g.
    ``data.synthetic``), validated with every default of the schema filled in."""
    schema = _cached_schema(str(SCHEMA_PATH))
    node: dict = schema
    for part in section.split("."):
        node = _resolve(node, schema)["properties"][part]
    instance = copy.deepcopy(values) if values is not None else {}
    errors = list(_DefaultingValidator({**_resolve(node, schema), "$defs": schema.get("$defs", {})}).iter_errors(instance))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(
            _describe(e).replace("config key '", f"config key '{section}.", 1) for e in errors))
    return instance


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
        unique = list(dict.fromkeys(problems))
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(unique))
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
    problems += _sweep_problems(config)
    problems += _arm_setting_problems(config)
    problems += _classifier_problems(config)
    problems += _robustness_problems(config)
    problems += _capabilities_problems(config)
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
    fit = config["analysis"].get("fit_sizes")
    if fit:
        problems += [f"config key 'analysis.fit_sizes': {s!r} is not a ladder size" for s in fit if s not in ladder]
    return problems


def _classifier_problems(config: dict[str, Any]) -> list[str]:
    """Names that must refer to defined classifiers: a classifier filter's, and weak-to-strong's
    (whose two classifiers read features, so neither may be context-free)."""
    models = config.get("classifiers", {}).get("models", {})
    problems = [f"config key 'filters.{name}.classifier': {spec.get('classifier')!r} is not under classifiers.models "
                f"({sorted(models)})" for name, spec in config["filters"].items()
                if spec["kind"] == "classifier" and spec.get("classifier") not in models]
    for name, spec in models.items():
        if spec["features"] in ("bilm", "encoder") and spec.get("size") not in config["ladder"]:
            problems.append(f"config key 'classifiers.models.{name}.size': {spec['features']} features need a ladder "
                            f"size, got {spec.get('size')!r} ({sorted(config['ladder'])})")
        if spec["features"] == "pretrained" and not spec.get("name"):
            problems.append(f"config key 'classifiers.models.{name}.name': required for pretrained features "
                            "(a Hugging Face model id or a local directory)")
    w2s = config.get("classifiers", {}).get("weak_to_strong", {})
    for side in ("weak", "strong"):
        name = w2s.get(side)
        if name is None:
            continue
        if name not in models:
            problems.append(f"config key 'classifiers.weak_to_strong.{side}': {name!r} is not under classifiers.models "
                            f"({sorted(models)})")
        elif models[name]["features"] == "context_free":
            problems.append(f"config key 'classifiers.weak_to_strong.{side}': {name!r} is context-free; weak-to-strong "
                            "compares probes on two models' features")
    return problems


def _robustness_problems(config: dict[str, Any]) -> list[str]:
    """Attacked sizes are sizes of the main ladder series, where the models to attack are."""
    robustness = config["robustness"]
    if not robustness["sizes"]:
        return []
    if (robustness["rmu"]["retain_documents"] == "no_forget" and config["data"]["source"] != "synthetic"
            and not robustness["rmu"].get("retain_text")):
        return ["config key 'robustness.rmu.retain_documents': 'no_forget' picks documents by their token ground "
                f"truth, which data.source {config['data']['source']!r} does not have; set 'all' (every training "
                "document) or give RMU retain text of its own (robustness.rmu.retain_text)"]
    ladders = [name for name, spec in config["experiments"].items() if spec["kind"] == "ladder"]
    if not ladders:
        return ["config key 'robustness.sizes': robustness attacks the main ladder series' models, and no "
                "series has kind 'ladder'"]
    sizes = config["experiments"][ladders[0]]["sizes"]
    problems = [f"config key 'robustness.sizes': {s!r} is not a size of series {ladders[0]!r} ({sizes})"
                for s in robustness["sizes"] if s not in sizes]
    adversarial = robustness["adversarial"]
    if adversarial["sweep_size"] is not None and adversarial["sweep_size"] not in robustness["sizes"]:
        problems.append(f"config key 'robustness.adversarial.sweep_size': {adversarial['sweep_size']!r} is not one "
                        f"of robustness.sizes {robustness['sizes']}")
    problems += [f"config key 'robustness.adversarial.lr_by_size': {s!r} is not one of robustness.sizes"
                 for s in adversarial["lr_by_size"] if s not in robustness["sizes"]]
    return problems


def _capabilities_problems(config: dict[str, Any]) -> list[str]:
    """The capability stage evaluates sizes of the main ladder series; its built-in parts (the
    world's MCQ sets, probes on ground-truth labels, the world judge) need the built-in world."""
    capabilities = config["capabilities"]
    lists = {"benchmarks.sizes": capabilities["benchmarks"]["sizes"],
             "benchmarks.baseline_sizes": capabilities["benchmarks"]["baseline_sizes"],
             "posttrain.sizes": capabilities["posttrain"]["sizes"], "probes.sizes": capabilities["probes"]["sizes"],
             "probes.subdomain_sizes": capabilities["probes"]["subdomain_sizes"]}
    used = {key: sizes for key, sizes in lists.items() if sizes}
    if not used:
        return []
    ladders = [name for name, spec in config["experiments"].items() if spec["kind"] == "ladder"]
    if not ladders:
        return [f"config key 'capabilities.{key}': the capability stage evaluates the main ladder series' models, "
                "and no series has kind 'ladder'" for key in used]
    sizes = config["experiments"][ladders[0]]["sizes"]
    problems = [f"config key 'capabilities.{key}': {s!r} is not a size of series {ladders[0]!r} ({sizes})"
                for key, values in used.items() for s in values if s not in sizes]
    source = config["data"]["source"]
    benchmarked = used.keys() & {"benchmarks.sizes", "benchmarks.baseline_sizes", "posttrain.sizes"}
    if source != "synthetic" and benchmarked and "builtin" in capabilities["benchmarks"]["tasks"]:
        problems.append(f"config key 'capabilities.benchmarks.tasks': 'builtin' is the built-in world's MCQ sets, which "
                        f"data.source {source!r} does not have; name the paper's sets (medmcqa, medqa, mmlu_...)")
    for key in used.keys() & {"probes.sizes", "probes.subdomain_sizes"}:
        if source != "synthetic":
            problems.append(f"config key 'capabilities.{key}': the probes read ground-truth token labels, which only "
                            f"data.source 'synthetic' has (data.source is {source!r})")
    if "posttrain.sizes" in used and source != "synthetic" and not capabilities["posttrain"].get("data"):
        problems.append("config key 'capabilities.posttrain.data': post-training on real data reads the paper's sets "
                        "(Table 3 mix, smol-smoltalk, HealthSearchQA, Alpaca) from local copies; name them here "
                        f"(data.source {source!r} has no built-in sets)")
    for name, spec in (capabilities["posttrain"].get("data") or {}).items():
        download = spec.get("download") or {}
        if download.get("source") == "huggingface" and not (download.get("repo") and download.get("pattern")):
            problems.append(f"config key 'capabilities.posttrain.data.{name}.download': source huggingface needs "
                            "repo and pattern")
    if "posttrain.sizes" in used:
        judge = config["judge"]["kind"]
        if judge == "provenance":
            problems.append("config key 'judge.kind': 'provenance' cannot judge answers; the free-response and refusal "
                            "evaluations of capabilities.posttrain.sizes need 'world' or 'http'")
        elif judge == "world" and source != "synthetic":
            problems.append(f"config key 'judge.kind': 'world' judges answers from the built-in world, which data.source "
                            f"{source!r} does not have; capabilities.posttrain.sizes needs 'http'")
    return problems


def _sweep_problems(config: dict[str, Any]) -> list[str]:
    """Hyperparameter overrides belong to lr_sweep series, which train baselines only."""
    from tokenfilter.config.experiments import SWEEP_HPARAMS

    problems = [f"config key 'filtering.{key}': set it on an lr_sweep series' variants, or on ladder sizes"
                for key in SWEEP_HPARAMS if key in config["filtering"]]
    source = config["training"].get("hparams_from")
    if source is not None and config["experiments"].get(source, {}).get("kind") != "lr_sweep":
        sweeps = [name for name, spec in config["experiments"].items() if spec["kind"] == "lr_sweep"]
        problems.append(f"config key 'training.hparams_from': {source!r} is not a series of kind lr_sweep; "
                        f"lr_sweep series: {sweeps}")
    for series, spec in config["experiments"].items():
        if spec["kind"] == "lr_sweep":
            if spec["arms"] != ["baseline"]:
                problems.append(f"config key 'experiments.{series}.arms': an lr_sweep series trains baselines only "
                                f"(arms: [baseline]), got {spec['arms']}")
            continue
        for variant, overrides in (spec.get("variants") or {}).items():
            for key in SWEEP_HPARAMS:
                if key in overrides:
                    problems.append(f"config key 'experiments.{series}.variants.{variant}.{key}': only series of kind "
                                    f"lr_sweep set hyperparameters (this series is {spec['kind']!r})")
    return problems


def _arm_setting_problems(config: dict[str, Any]) -> list[str]:
    """Label noise and delayed start are token-level modifiers (paper §6.1, App B.5)."""
    from tokenfilter.config.experiments import filtering_settings, series_runs

    problems = []
    for series in config["experiments"]:
        for run in series_runs(config, series):
            if run.arm == "baseline":
                continue
            settings = filtering_settings(config, run)
            if settings.get("noise") and settings.get("noise_structure") == "structured" and \
                    config["data"]["source"] != "synthetic":
                problems.append(f"config key 'experiments.{series}' (variant {run.variant!r}): noise_structure "
                                "'structured' puts errors where the ground truth says a classifier errs, which "
                                f"only data.source 'synthetic' has (data.source is {config['data']['source']!r})")
            if run.arm != "document":
                continue
            for key in ("noise", "delay"):
                if settings.get(key):
                    problems.append(f"config key 'experiments.{series}' (variant {run.variant!r}): {key}="
                                    f"{settings[key]} applies to token arms only; the document arm needs {key}: 0")
    return list(dict.fromkeys(problems))  # one line per problem, however many sizes and seeds share it


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively.

    Snakemake reruns a job when the text of its params changes, and a dict's text follows its
    key order: without this, reordering keys in a config file would retrain every model.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file (for use outside Snakemake, e.g. tests and the CLI)."""
    config = load_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return validate_config(config)


# --- documentation -----------------------------------------------------------------------------

def _type_text(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "object" if "properties" in node else "")
    kinds = kind if isinstance(kind, list) else [kind]
    return " or ".join(k for k in kinds if k)


def _resolve(node: dict, schema: dict) -> dict:
    """Follow a local ``$ref`` (and ``allOf`` of one ref), keeping the node's own keys on top."""
    merged = dict(node)
    refs = [node["$ref"]] if "$ref" in node else [n["$ref"] for n in node.get("allOf", []) if "$ref" in n]
    for ref in refs:
        target = schema
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        base = dict(target)
        if "properties" in merged and "properties" in base:  # defaults written beside the ref
            props = {k: {**base["properties"].get(k, {}), **v} for k, v in merged["properties"].items()}
            base["properties"] = {**base["properties"], **props}
            merged.pop("properties")
        merged = {**base, **{k: v for k, v in merged.items() if k not in ("$ref", "allOf")}}
    return merged


def schema_markdown(schema: dict | None = None) -> str:
    """``config/README.md``: every key of the schema with its type, default and meaning."""
    schema = schema or load_schema()
    lines = [
        "# Configuration reference",
        "",
        "Generated from `src/tokenfilter/config/schema.yaml` by `tokenfilter config-docs` "
        "(a test checks it is current). The built-in default is `config/config.yaml`; the paper's "
        "scale is `config/paper.yaml`. A config given with `--configfile` replaces the default "
        "entirely; keys it leaves out take the defaults below. Every key is validated before any "
        "job runs, and an error names the key, the bad value and what is allowed.",
        "",
        "`<name>` stands for a key you choose (a ladder size, a series, a variant, a filter).",
        "",
    ]

    def walk(node: dict, path: str, rows: list) -> None:
        node = _resolve(node, schema)
        default = node.get("default", "")
        desc = " ".join(str(node.get("description", "")).split())
        rows.append((path, _type_text(node), "" if default == "" else f"`{json_default(default)}`", desc))
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}", rows)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            walk(extra, f"{path}.<name>", rows)
        items = node.get("items")
        if isinstance(items, dict) and "properties" in _resolve(items, schema):
            for name, child in _resolve(items, schema)["properties"].items():
                walk(child, f"{path}[].{name}", rows)

    for section, node in schema["properties"].items():
        rows: list = []
        walk(node, section, rows)
        lines += [f"## `{section}`", "", rows[0][3], "", "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{p}` | {t} | {d} | {m} |" for p, t, d, m in rows[1:] or rows]
        lines.append("")
    return "\n".join(lines)


def json_default(value: Any) -> str:
    import json

    return json.dumps(value)
