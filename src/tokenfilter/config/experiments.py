"""Experiment series resolved into runs, and each run's training spec and job resources.

``config["experiments"]`` declares named series, each of a *kind* (what sweep it is: the main
ladder, a threshold sweep, a filter ablation, ...) and made of arms × sizes × variants
(variants override the ``filtering`` defaults). One generic set of rules serves every series
(pypsa-eur's scenarios-as-data): a run's identity is its path, and everything a rule needs to
know about a run comes from the functions here. The analysis draws the figures of a series'
kind, and the scorecard finds the series it reads by kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from tokenfilter import ARMS
from tokenfilter.errors import ConfigError

BASELINE_SERIES = "baselines"  # every series shares one baseline model per size
DEFAULT_VARIANT = "default"
BASELINE_VARIANT = "none"

# The run path pattern, written once: results/<stage>/<series>/<arm>/<size>/<variant>/<replicate>/...
RUN_PATTERN = "{series}/{arm}/{size}/{variant}/{replicate}"

# Kinds of series and what each measures (the figures of each are in tokenfilter.analysis).
SERIES_KINDS = {
    "ladder": "every arm across model sizes: loss-matched slowdowns, compute-loss curves (Figs 1, 4, 16, 19)",
    "thresholds": "token vs document filtering at several filtered-token fractions (Fig 3)",
    "filter": "the token arms with another filter source than the main series', compared arm by arm",
    "classifiers": "a classifier filter per variant across sizes: frontier gain over the baseline vs AUROC (Figs 14, 27, 28)",
    "noise": "label-flip noise per variant, uniform or structured: slowdown vs the flags' measured error rate (Fig 12)",
    "delay": "filtering that starts after a fraction of training per variant: slowdown vs delay (Figs 22, 23)",
    "lr_sweep": "baseline models per learning rate, weight decay and parametrisation (SP or µP) across widths (Table 2, E0)",
}
# What a variant of an lr_sweep series may set: the optimiser and the parametrisation of its runs.
SWEEP_HPARAMS = ("lr", "weight_decay", "mup_base_width")


@dataclass(frozen=True, order=True)
class Run:
    """One pretraining run: ``results/pretrain/{series}/{arm}/{size}/{variant}/{replicate}/``.

    ``replicate`` k trains with seed ``config.seed + k`` (initial weights, data order, label
    noise); the corpus, the filter and everything else are the same for every replicate.
    """

    series: str
    arm: str
    size: str
    variant: str
    replicate: int = 0

    @property
    def name(self) -> str:
        return RUN_PATTERN.format(series=self.series, arm=self.arm, size=self.size, variant=self.variant,
                                  replicate=f"r{self.replicate}")

    def path(self, stage: str = "pretrain") -> str:
        return f"results/{stage}/{self.name}"

    @classmethod
    def parse(cls, name: str) -> "Run":
        """The run named ``series/arm/size/variant`` (as written in summaries and results)."""
        parts = str(name).strip("/").split("/")
        if len(parts) != 5 or not all(parts) or not parts[4].startswith("r") or not parts[4][1:].isdigit():
            raise ValueError(f"{name!r} is not a run name of the form {RUN_PATTERN} (replicate r0, r1, ...)")
        series, arm, size, variant, replicate = parts
        if arm not in ARMS:
            raise ValueError(f"{name!r}: arm {arm!r} is not one of {list(ARMS)}")
        return cls(series, arm, size, variant, int(replicate[1:]))

    @classmethod
    def from_wildcards(cls, wildcards: Any) -> "Run":
        return cls(wildcards.series, wildcards.arm, wildcards.size, wildcards.variant, int(wildcards.replicate[1:]))


def baseline_run(size: str, replicate: int = 0) -> Run:
    return Run(BASELINE_SERIES, "baseline", size, BASELINE_VARIANT, replicate)


def replicates(config: dict[str, Any], series: str, size: str) -> int:
    """How many seeds a series trains at ``size`` (``seeds``: a number, or a number per size)."""
    seeds = config["experiments"][series]["seeds"]
    return int(seeds.get(size, 1)) if isinstance(seeds, dict) else int(seeds)


def series_runs(config: dict[str, Any], series: str) -> Iterator[Run]:
    """The runs of a series; its baselines are the shared baseline of each size and replicate."""
    spec = config["experiments"][series]
    variants = list(spec.get("variants") or {DEFAULT_VARIANT: {}})
    for size in spec["sizes"]:
        for replicate in range(replicates(config, series, size)):
            for arm in spec["arms"]:
                if arm == "baseline" and spec["kind"] == "lr_sweep":
                    # A sweep's baselines are its own: each variant trains with other hyperparameters.
                    yield from (Run(series, arm, size, variant, replicate) for variant in variants)
                elif arm == "baseline":
                    yield baseline_run(size, replicate)
                else:
                    for variant in variants:
                        yield Run(series, arm, size, variant, replicate)


def all_runs(config: dict[str, Any]) -> list[Run]:
    return sorted({run for series in config["experiments"] for run in series_runs(config, series)})


def ladder_run(config: dict[str, Any], arm: str, size: str, replicate: int = 0) -> Run:
    """The run of ``arm`` at ``size`` in the first ladder series (the main series), which later
    stages (robustness, evaluations, post-training) read."""
    if arm == "baseline":
        return baseline_run(size, replicate)
    ladders = series_of_kind(config, "ladder")
    if not ladders:
        raise ConfigError("experiments: a stage that reads the main series needs a series of kind 'ladder'")
    return Run(ladders[0], arm, size, DEFAULT_VARIANT, replicate)


def series_kind(config: dict[str, Any], series: str) -> str:
    return config["experiments"][series]["kind"]


def series_of_kind(config: dict[str, Any], kind: str) -> list[str]:
    """Names of the series of ``kind``, in config order."""
    if kind not in SERIES_KINDS:
        raise ConfigError(f"unknown series kind {kind!r}; kinds: {sorted(SERIES_KINDS)}")
    return [name for name, spec in config["experiments"].items() if spec["kind"] == kind]


def sweep_hparams(config: dict[str, Any], run: Run) -> dict[str, Any]:
    """The ladder hyperparameters a run of an lr_sweep series overrides (empty for any other run)."""
    spec = config["experiments"].get(run.series)
    if spec is None or spec["kind"] != "lr_sweep":
        return {}
    return dict((spec.get("variants") or {}).get(run.variant, {}))


def filtering_settings(config: dict[str, Any], run: Run) -> dict[str, Any]:
    """The filter settings a run trains with (the baseline filters nothing)."""
    if run.arm == "baseline":
        return {}
    settings = dict(config["filtering"])
    settings.update((config["experiments"][run.series].get("variants") or {}).get(run.variant, {}))
    return settings


def filter_of(config: dict[str, Any], run: Run) -> str | None:
    """Name of the filter source a run reads (None for the baseline)."""
    return None if run.arm == "baseline" else filtering_settings(config, run)["filter"]


def series_filters(config: dict[str, Any], series: str) -> list[str]:
    """The filter sources the filtered runs of a series read."""
    return sorted({filter_of(config, run) for run in series_runs(config, series)} - {None})


def size_resources(config: dict[str, Any], size: str) -> dict[str, int]:
    """Job resources of a training run of ``size``: training defaults, then the size's own."""
    from tokenfilter.config import default_of

    resources = {**default_of("training.resources"), **config["training"]["resources"]}
    resources.update(config["ladder"][size].get("resources", {}))
    return resources


def train_spec(config: dict[str, Any], run: Run, train_shard: str, scores_dir: str | None) -> dict[str, Any]:
    """The :class:`tokenfilter.train.loop.TrainSpec` fields of a pretraining ``run`` (JSON-serialisable).

    Only what changes the trained model goes in: Snakemake reruns a job when its params change,
    and an evaluation setting or a logging knob must not retrain a model. The knobs that do not
    change the model come from :func:`runtime_settings` when the job runs.
    """
    size = {**config["ladder"][run.size], **sweep_hparams(config, run)}
    training = config["training"]
    model = {**config["model"], **{k: v for k, v in sweep_hparams(config, run).items() if k == "mup_base_width"}}
    name = filter_of(config, run)
    return {
        "run": run.name,
        "task": "pretrain",
        "init_from": "scratch",
        "model": {
            "n_layer": size["n_layer"], "n_embd": size["n_embd"], "n_head": size["n_head"],
            "block_size": model["block_size"], "position_encoding": model["position_encoding"],
            "rope_theta": model["rope_theta"], "mup_base_width": model["mup_base_width"],
            "init_std": model["init_std"],
        },
        "data": {
            "train_shard": train_shard,
            "arm": run.arm,
            "scores_dir": scores_dir,
            "filtering": filtering_settings(config, run),
            # The filter source's own settings: a changed error rate is a different run even
            # though the annotation directory keeps its name.
            "filter_spec": None if name is None else config["filters"][name],
            # The ground truth's document label, to measure the document arm's filter against.
            "document_label_share": document_label_share(config),
        },
        "objective": {"kind": "lm"},
        "lr": size["lr"],
        "weight_decay": size["weight_decay"],
        "betas": list(training["betas"]),
        "eps": training["eps"],
        "grad_clip": size.get("grad_clip", training["grad_clip"]),
        "schedule": "cosine",
        "warmup_fraction": training["warmup_fraction"],
        "min_lr_ratio": training["min_lr_ratio"],
        "budget": {"tokens_per_param": training["tokens_per_param"]},
        "count": training["budget"],
        "batch_tokens": training["batch_tokens"],
        "micro_batch_size": size.get("micro_batch_size", training["micro_batch_size"]),
        "precision": training["precision"],
        "kernels": training["kernels"],
        "compile": training["compile"],
        "compile_min_flops": training["compile_min_flops"],
        "seed": config["seed"] + run.replicate,
        "snapshots": training["snapshots"],
    }


def document_label_share(config: dict[str, Any]) -> float | None:
    """The forget share at which the built-in world labels a document forget (None for real data)."""
    if config["data"]["source"] != "synthetic":
        return None
    from tokenfilter.data.synthetic.build import SyntheticParams

    return SyntheticParams.from_config(config["data"].get("synthetic", {})).documents.doc_label_min_forget


RUNTIME_KEYS = ("checkpoint_every", "threads", "log_every", "keep_checkpoints", "wandb", "tensorboard", "peak_flops")


def runtime_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Training knobs that do not change the trained model (threads, logging, checkpointing)."""
    return {key: config["training"][key] for key in RUNTIME_KEYS}


# --- robustness: RMU and adversarial finetuning (paper E9) ---------------------------------------

def _finetune_fields(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The TrainSpec fields every post-hoc training run shares (a saved model, constant schedule)."""
    training = config["training"]
    return {"model": None, "betas": list(training["betas"]), "eps": training["eps"], "grad_clip": training["grad_clip"],
            "schedule": "constant", "warmup_fraction": 0.0, "min_lr_ratio": 1.0, "count": "processed",
            "micro_batch_size": training["micro_batch_size"], "precision": training["precision"],
            "kernels": training["kernels"], "compile": False, "compile_min_flops": training["compile_min_flops"],
            "seed": seed, "snapshots": 0}


def rmu_spec(config: dict[str, Any], size: str, model_dir: str, forget_shard: str, retain_shard: str,
             replicate: int = 0) -> dict[str, Any]:
    """The TrainSpec fields of RMU on baseline ``replicate`` of ``size`` (config ``robustness.rmu``)."""
    rmu = config["robustness"]["rmu"]
    return {
        "run": f"robustness/rmu/{size}/default/r{replicate}", "task": "rmu", "init_from": model_dir,
        "data": {"forget_shard": forget_shard, "retain_shard": retain_shard,
                 # text of its own source is retain text throughout; the pretraining shard is filtered
                 "retain_documents": "all" if rmu.get("retain_text") else rmu["retain_documents"]},
        "objective": {"kind": "rmu", "layer": rmu["layer"], "alpha": rmu["alpha"],
                      "steering_coeff": rmu["steering_coeff"], "steering_scale": rmu["steering_scale"],
                      "reference_norm": rmu["reference_norm"], "norm_tokens": rmu["norm_tokens"]},
        "lr": rmu["lr"], "weight_decay": rmu["weight_decay"], "budget": {"steps": rmu["steps"]},
        "batch_tokens": rmu["batch_tokens"], **_finetune_fields(config, config["seed"] + replicate),
    }


ATTACK_TARGETS = ("document", "mask", "remove", "rmu")


def adversarial_settings(config: dict[str, Any], size: str) -> list[tuple[float, float]]:
    """(lr, weight decay) settings the attacker runs at ``size``: the sweep at the sweep size, the
    chosen setting elsewhere."""
    adv = config["robustness"]["adversarial"]
    chosen = (adv["lr_by_size"].get(size, adv["lr"]), adv["weight_decay"])
    if size == adv["sweep_size"]:
        return sorted({chosen, *((lr, wd) for lr in adv["sweep_lrs"] for wd in adv["sweep_weight_decays"])})
    return [chosen]


def setting_name(lr: float, weight_decay: float) -> str:
    return f"lr{lr:g}_wd{weight_decay:g}"


def parse_setting(name: str) -> tuple[float, float]:
    lr, wd = name.removeprefix("lr").split("_wd")
    return float(lr), float(wd)


def attack_runs(config: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(target, size, setting, replicate) of every attack: each filtered arm of the main ladder and
    RMU at every attacked size, with the sweep's settings at the sweep size. Attacks follow the
    ladder's seeds: replicate k attacks the models pretrained with seed k (RMU unlearns baseline k)
    with its own data order, so the spread of a robustness claim includes the models' own."""
    sizes = config["robustness"]["sizes"]
    if not sizes:
        return []
    ladder = series_of_kind(config, "ladder")[0]
    arms = [a for a in config["experiments"][ladder]["arms"] if a != "baseline"]
    adv = config["robustness"]["adversarial"]
    runs = []
    for size in sizes:
        chosen = setting_name(adv["lr_by_size"].get(size, adv["lr"]), adv["weight_decay"])
        for target in [*arms, "rmu"]:
            runs += [(target, size, setting_name(lr, wd), 0) for lr, wd in adversarial_settings(config, size)]
            runs += [(target, size, chosen, k) for k in range(1, replicates(config, ladder, size))]
    return runs


def adversarial_spec(config: dict[str, Any], target: str, size: str, setting: str, model_dir: str,
                     baseline_dir: str, attack_shard: str, eval_shard: str, replicate: int = 0) -> dict[str, Any]:
    """The TrainSpec fields of the attacker finetuning ``target`` (an arm or "rmu") of ``size``.
    The budget is a share of the model's pretraining tokens (tokens per parameter × N)."""
    adv = config["robustness"]["adversarial"]
    lr, weight_decay = parse_setting(setting)
    tokens_per_param = config["training"]["tokens_per_param"]
    return {
        "run": f"robustness/{target}/{size}/{setting}/r{replicate}", "task": "adversarial", "init_from": model_dir,
        "data": {"attack_shard": attack_shard, "eval_shard": eval_shard, "baseline_model": baseline_dir,
                 "eval_tokens": adv["eval_tokens"], "eval_batch_size": config["evaluation"]["batch_size"],
                 "eval_every": adv["eval_every"], "pretraining_tokens_per_param": tokens_per_param},
        "objective": {"kind": "lm"}, "lr": lr, "weight_decay": weight_decay,
        "budget": {"tokens_per_param": adv["budget_share"] * tokens_per_param}, "batch_tokens": adv["batch_tokens"],
        **_finetune_fields(config, config["seed"] + replicate),
    }


# --- labels and classifiers (paper §5, E1-E3, E16, E17) --------------------------------------------

def _from_scratch(config: dict[str, Any], run: str, task: str, model: dict[str, Any], shard: str, lr: float,
                  weight_decay: float, budget: dict[str, float], objective: dict[str, Any],
                  extra_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A TrainSpec of a model trained from scratch on a token shard with the ladder's optimiser,
    schedule and batch (the reference LM, a biLM's right half, the masked-LM encoder)."""
    training = config["training"]
    return {
        "run": run, "task": task, "init_from": "scratch", "model": model,
        "data": {"train_shard": shard, "arm": "baseline", "scores_dir": None, "filtering": {}, "filter_spec": None,
                 "document_label_share": None, **(extra_data or {})},
        "objective": objective, "lr": lr, "weight_decay": weight_decay, "betas": list(training["betas"]),
        "eps": training["eps"], "grad_clip": training["grad_clip"], "schedule": "cosine",
        "warmup_fraction": training["warmup_fraction"], "min_lr_ratio": training["min_lr_ratio"], "budget": budget,
        "count": "processed", "batch_tokens": training["batch_tokens"], "micro_batch_size": training["micro_batch_size"],
        "precision": training["precision"], "kernels": training["kernels"], "compile": training["compile"],
        "compile_min_flops": training["compile_min_flops"], "seed": config["seed"], "snapshots": 0,
    }


def _gpt_fields(config: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    model = config["model"]
    return {"n_layer": shape["n_layer"], "n_embd": shape["n_embd"], "n_head": shape["n_head"],
            "block_size": model["block_size"], "position_encoding": model["position_encoding"],
            "rope_theta": model["rope_theta"], "mup_base_width": model["mup_base_width"], "init_std": model["init_std"]}


def reference_spec(config: dict[str, Any], shard: str) -> dict[str, Any]:
    """The reference LM the SAE reads (``labels.reference``, kind train), on the corpus tokenised
    with its own tokenizer."""
    ref = config["labels"]["reference"]
    return _from_scratch(config, "labels/reference/lm/default/r0", "pretrain", _gpt_fields(config, ref), shard,
                         ref["lr"], ref["weight_decay"], {"tokens_per_param": ref["tokens_per_param"]}, {"kind": "lm"})


def classifier_model(config: dict[str, Any], name: str) -> dict[str, Any]:
    spec = config["classifiers"]["models"].get(name)
    if spec is None:
        raise ConfigError(f"classifier {name!r} is not defined under classifiers.models "
                          f"({sorted(config['classifiers']['models'])})")
    return spec


def trained_halves(config: dict[str, Any]) -> list[str]:
    """Sizes whose biLM right half some classifier needs (the left half is the ladder baseline)."""
    return sorted({m["size"] for m in config["classifiers"]["models"].values()
                   if m["features"] == "bilm" and m.get("forget_share") is None})


def upsampled_tag(forget_share: float) -> str:
    """The name of a forget-upsampled biLM corpus (e.g. 0.5 -> ``forget50``)."""
    return f"forget{round(100 * forget_share):02d}"


def upsampled_bilms(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(corpus tag, size) of every biLM some classifier trains on a forget-upsampled corpus (both
    halves trained: the ladder's baseline saw the pretraining mix, not this one)."""
    return sorted({(upsampled_tag(m["forget_share"]), m["size"]) for m in config["classifiers"]["models"].values()
                   if m["features"] == "bilm" and m.get("forget_share") is not None})


def upsampled_share(config: dict[str, Any], tag: str) -> float:
    for m in config["classifiers"]["models"].values():
        if m.get("forget_share") is not None and upsampled_tag(m["forget_share"]) == tag:
            return float(m["forget_share"])
    raise ConfigError(f"no classifier trains a biLM on the corpus {tag!r}")


def encoder_sizes(config: dict[str, Any]) -> list[str]:
    return sorted({m["size"] for m in config["classifiers"]["models"].values() if m["features"] == "encoder"})


def right_half_spec(config: dict[str, Any], size: str, shard: str) -> dict[str, Any]:
    """The right-to-left half of the biLM of ``size``: the ladder's shape, learning rate and budget,
    trained on reversed windows (the left half is the main series' baseline of that size)."""
    return bilm_half_spec(config, size, shard, "right", f"classifiers/bilm/{size}/right/r0")


def bilm_half_spec(config: dict[str, Any], size: str, shard: str, direction: str, run: str) -> dict[str, Any]:
    """One half of a biLM of ``size`` (``direction`` left or right: reversed windows) on a token shard."""
    if direction not in ("left", "right"):
        raise ConfigError(f"a biLM half is 'left' or 'right', not {direction!r}")
    shape = config["ladder"][size]
    return _from_scratch(config, run, "bilm", _gpt_fields(config, shape), shard, shape["lr"], shape["weight_decay"],
                         {"tokens_per_param": config["training"]["tokens_per_param"]}, {"kind": "lm"},
                         {"reverse": direction == "right"})


def encoder_spec(config: dict[str, Any], size: str, shard: str) -> dict[str, Any]:
    """The masked-LM encoder of ``size`` (RoBERTa-style, from scratch; ``classifiers.mlm``)."""
    shape = config["ladder"][size]
    mlm = config["classifiers"]["mlm"]
    model = {"architecture": "roberta", "n_layer": shape["n_layer"], "n_embd": shape["n_embd"],
             "n_head": shape["n_head"], "block_size": config["model"]["block_size"]}
    return _from_scratch(config, f"classifiers/encoder/{size}/mlm/r0", "pretrain", model, shard,
                         mlm["lr"] or shape["lr"], shape["weight_decay"], {"tokens_per_param": mlm["tokens_per_param"]},
                         {"kind": "mlm", "mask_rate": mlm["mask_rate"]})


# --- capabilities: post-training of the main series' models (paper E7, E8, E12, E13) ---------------

POSTTRAIN_STAGES = ("instruct", "chat", "refusal_prose", "refusal_token")


def posttrain_settings(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The optimiser settings of a post-training stage: ``capabilities.posttrain.instruct`` or
    ``.chat``, or ``capabilities.refusal`` for both refusal variants."""
    if stage not in POSTTRAIN_STAGES:
        raise ConfigError(f"post-training stage {stage!r} is not one of {POSTTRAIN_STAGES}")
    capabilities = config["capabilities"]
    return capabilities["refusal"] if stage.startswith("refusal") else capabilities["posttrain"][stage]


def posttrain_spec(config: dict[str, Any], stage: str, arm: str, size: str, model_dir: str, examples: str,
                   replicate: int = 0) -> dict[str, Any]:
    """The TrainSpec fields of post-training stage ``stage`` of ``arm`` at ``size`` from the saved
    model ``model_dir`` (instruction or chat tuning from the pretrained model, refusal training from
    the chat model) on the examples file ``examples``: a constant learning rate for a number of
    passes over the examples (paper: one), ``batch_size`` examples per optimizer step."""
    settings = posttrain_settings(config, stage)
    batch = settings["batch_size"]
    return {
        "run": f"capabilities/{stage}/{arm}/{size}/r{replicate}", "task": "finetune", "init_from": model_dir,
        "data": {"examples": examples}, "objective": {"kind": "lm"}, "lr": settings["lr"],
        "weight_decay": settings["weight_decay"], "budget": {"epochs": settings["epochs"]},
        # A fine-tuning item is one example padded into a block_size window: batch_tokens counts windows.
        "batch_tokens": batch * config["model"]["block_size"],
        **_finetune_fields(config, config["seed"] + replicate),
        "micro_batch_size": min(batch, config["training"]["micro_batch_size"]),
    }


def main_arms(config: dict[str, Any]) -> list[str]:
    """The arms of the main series (the first ladder), which the capability stage evaluates."""
    ladders = series_of_kind(config, "ladder")
    return list(config["experiments"][ladders[0]]["arms"]) if ladders else []


def benchmark_models(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(arm, size, replicate) of the base models benchmarked in the cloze format: every arm of the
    main series at ``capabilities.benchmarks.sizes`` and the baseline at ``baseline_sizes``, first seed."""
    bench = config["capabilities"]["benchmarks"]
    models = [(arm, size, 0) for size in bench["sizes"] for arm in main_arms(config)]
    models += [("baseline", size, 0) for size in bench["baseline_sizes"] if size not in bench["sizes"]]
    return sorted(set(models), key=models.index)


def posttrain_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(arm, size) of the models instruction- and chat-tuned (from the first seed's pretrained model)."""
    return [(arm, size) for size in config["capabilities"]["posttrain"]["sizes"] for arm in main_arms(config)]


def refusal_models(config: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(variant, arm, size, training seed) of every refusal-trained model (from the chat models)."""
    refusal = config["capabilities"]["refusal"]
    return [(variant, arm, size, k) for variant in refusal["variants"] for arm, size in posttrain_models(config)
            for k in range(refusal["seeds"])]


def probe_models(config: dict[str, Any], size: str) -> list[tuple[str, int]]:
    """(arm, replicate) of the main series at ``size``: every seed, so a probe's spread is known."""
    ladders = series_of_kind(config, "ladder")
    return [(arm, k) for k in range(replicates(config, ladders[0], size)) for arm in main_arms(config)]
