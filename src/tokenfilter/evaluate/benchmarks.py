"""Multiple-choice benchmarks through lm-eval: the built-in world's MCQs and the paper's tasks.

Two kinds of task, both written as lm-eval task YAMLs into a directory that one
``TaskManager(include_path=..., include_defaults=False)`` reads:

* **Built-in tasks** (:func:`write_builtin_tasks`): the synthetic world's 4-option MCQs, one JSONL
  per domain, in two formats. ``letter`` scores the letters " A".." D" after the lettered prompt
  (what an instruction-tuned model answers); ``cloze`` scores each option's text after a sentence
  stem (what a base model can answer). Task names: ``tokenfilter_<domain>_<format>``.
* **Paper tasks** (:func:`write_paper_tasks`): MedMCQA, MedQA (4 options) and MMLU subjects.
  Compute nodes are offline, so they are read from local copies of the datasets' *published*
  files, converted to the field layout of lm-eval's own task, and run through that task's own
  YAML: each generated YAML ``include:``\\ s the built-in YAML by absolute path (lm-eval resolves
  an absolute include as is, and a ``!function`` relative to the file that holds it), so the
  prompt, choices and metrics are lm-eval's exactly; only the data source, the name and the
  unused splits are overridden. Task names: ``tokenfilter_<lm-eval name>_<format>``.

Every task directory is checked after writing (:func:`check_tasks_resolve`): lm-eval's index
skips a YAML it cannot parse with a debug-level log line, so a broken task would otherwise
vanish from the run without an error.

:func:`evaluate_models` runs many models per call (lm-eval's start-up costs seconds), zero-shot
and deterministic (log-likelihood scoring, no sampling).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import yaml

from tokenfilter.errors import ConfigError, InputError
from tokenfilter.io import atomic_open, write_jsonl

LETTERS = "ABCD"
CHANCE = 0.25  # every task here has exactly 4 options (the readers below enforce it)
FORMATS = ("letter", "cloze")
PREFIX = "tokenfilter"

# The paper's benchmark sets (lm-eval task names). MMLU subjects by the paper's groups.
MMLU_SUBJECTS: dict[str, tuple[str, ...]] = {
    "medicine": ("college_medicine", "professional_medicine", "medical_genetics", "anatomy", "virology",
                 "clinical_knowledge"),
    "bio": ("college_biology", "high_school_biology", "college_chemistry", "high_school_chemistry"),
    "stem": ("conceptual_physics", "high_school_physics", "college_physics", "high_school_computer_science",
             "college_computer_science", "electrical_engineering", "machine_learning", "astronomy",
             "computer_security"),
    "non_stem": ("high_school_government_and_politics", "high_school_geography", "international_law",
                 "jurisprudence", "management", "marketing", "philosophy", "prehistory", "public_relations",
                 "sociology", "us_foreign_policy", "world_religions"),
}
PAPER_GROUPS: dict[str, tuple[str, ...]] = {
    "medmcqa": ("medmcqa",),
    "medqa": ("medqa_4options",),
    **{f"mmlu_{group}": tuple(f"mmlu_{s}" for s in subjects) for group, subjects in MMLU_SUBJECTS.items()},
}


# --------------------------------------------------------------------------------------------
# Task names and checks


def builtin_task_name(domain: str, fmt: str) -> str:
    """Name of the built-in MCQ task of ``domain`` in format ``fmt``."""
    return f"{PREFIX}_{domain}_{fmt}"


def paper_task_name(name: str, fmt: str) -> str:
    """Name of our copy of lm-eval task ``name`` (e.g. ``mmlu_anatomy``) in format ``fmt``."""
    return f"{PREFIX}_{name}_{fmt}"


def paper_task_names(groups: Iterable[str] | None = None) -> list[str]:
    """lm-eval names of the paper's tasks in ``groups`` (all of :data:`PAPER_GROUPS` by default):
    ``medmcqa``, ``medqa``, ``mmlu_medicine``, ``mmlu_bio``, ``mmlu_stem``, ``mmlu_non_stem``."""
    groups = list(PAPER_GROUPS) if groups is None else list(groups)
    unknown = [g for g in groups if g not in PAPER_GROUPS]
    if unknown:
        raise ConfigError(f"unknown benchmark group(s) {unknown}; known: {sorted(PAPER_GROUPS)}")
    return [name for g in groups for name in PAPER_GROUPS[g]]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"benchmark format {fmt!r} is not one of {list(FORMATS)}")


def check_tasks_resolve(task_dir: str | os.PathLike, names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming every task in ``names`` that lm-eval cannot load from
    ``task_dir``: a YAML the index skipped (parse error, broken ``include``), a ``!function``
    that does not import, or a data file that is not there.

    Fast: it reads the YAMLs but builds no task (no dataset is loaded).
    """
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    task_dir = Path(task_dir)
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    problems = []
    for name in names:
        entry = manager.task_index.get(name)
        if entry is None or entry.yaml_path is None:
            problems.append(f"{name}: {_why_missing(task_dir, name)}")
            continue
        try:
            # resolve_func=True imports every !function; the index only read them as strings.
            config = load_yaml(entry.yaml_path, resolve_func=True)
        except Exception as exc:  # lm-eval raises whatever the YAML or import raised
            problems.append(f"{name}: {entry.yaml_path}: {type(exc).__name__}: {exc}")
            continue
        data_files = (config.get("dataset_kwargs") or {}).get("data_files")
        if config.get("dataset_path") == "json" and isinstance(data_files, dict):  # the form we write
            if config.get("test_split") not in data_files:
                problems.append(f"{name}: {entry.yaml_path}: data_files has no {config.get('test_split')!r} "
                                f"split (the task's test_split)")
            for split, path in data_files.items():
                if not Path(path).is_file():
                    problems.append(f"{name}: {entry.yaml_path}: data file of split {split!r} not found: {path}")
    if problems:
        raise ConfigError(f"lm-eval cannot load these tasks from {task_dir}:\n  " + "\n  ".join(problems))


def _why_missing(task_dir: Path, name: str) -> str:
    """Why the index lacks ``name``: the error of loading its YAML, if we wrote one."""
    from lm_eval.tasks._yaml_loader import load_yaml

    path = task_dir / f"{name}.yaml"
    if not path.is_file():
        return f"no task of this name in {task_dir}"
    try:
        config = load_yaml(path, resolve_func=False)
    except Exception as exc:
        return f"{path}: lm-eval skips this YAML: {type(exc).__name__}: {exc}"
    return f"{path}: lm-eval does not register it (its 'task' is {config.get('task')!r})"


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------
# Built-in tasks: the synthetic world's MCQs


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line; InputError on invalid JSON."""
    # utf-8-sig: a byte-order mark some tools write is not part of the first record.
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, line_no, f"invalid JSON ({exc.msg})") from None


def _require(record: Any, path: Path, line: int, fields: dict[str, type]) -> None:
    """InputError unless ``record`` is an object with each field of the given type."""
    if not isinstance(record, dict):
        raise InputError(path, line, f"expected a JSON object, got {type(record).__name__}")
    for field, kind in fields.items():
        if field not in record:
            raise InputError(path, line, f"missing field {field!r}")
        value = record[field]
        # bool is an int to Python, never an answer index.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(path, line, f"field {field!r} should be {kind.__name__}, got {value!r}")


def _check_four_strings(value: list, path: Path, line: int, field: str) -> None:
    if len(value) != 4 or not all(isinstance(v, str) for v in value):
        raise InputError(path, line, f"field {field!r} should hold 4 strings, got {value!r}")


def _check_mcq_file(path: Path, formats: Sequence[str]) -> int:
    """Check every record has what the requested formats read; returns the number of questions."""
    fields: dict[str, type] = {"answer": int}
    if "letter" in formats:
        fields["prompt"] = str
    if "cloze" in formats:
        fields.update(cloze_context=str, cloze_choices=list)
    n = 0
    for line, record in _jsonl_records(path):
        _require(record, path, line, fields)
        if not 0 <= record["answer"] < 4:
            raise InputError(path, line, f"answer {record['answer']} is not an option index 0-3")
        if "cloze" in formats:
            _check_four_strings(record["cloze_choices"], path, line, "cloze_choices")
        n += 1
    if n == 0:
        raise InputError(path, None, "no questions")
    return n


def _builtin_config(name: str, fmt: str, data_path: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data_path)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_target": "answer",
    }
    if fmt == "letter":
        # Field names (not Jinja templates) make lm-eval use the text exactly as written.
        # target_delimiter " " (lm-eval's default) turns the choice "A" into the continuation " A".
        config.update(doc_to_text="prompt", doc_to_choice=list(LETTERS), target_delimiter=" ",
                      metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}])
    else:
        # The cloze choices carry their own leading space (" lorinib."), so no delimiter.
        config.update(doc_to_text="cloze_context", doc_to_choice="cloze_choices", target_delimiter="",
                      metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                   {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}])
    config["metadata"] = {"version": 1.0}
    return config


def write_builtin_tasks(mcq_files: dict[str, str | os.PathLike], out_dir: str | os.PathLike,
                        formats: Sequence[str] = FORMATS) -> list[str]:
    """Write one task YAML per domain × format for the built-in MCQ files ``{domain: jsonl}``.

    The files are checked first (InputError naming file and line for a bad record), then every
    written task is checked to load (:func:`check_tasks_resolve`). Returns the task names.
    """
    for fmt in formats:
        _check_format(fmt)
    out_dir = Path(out_dir)
    # Every file is checked before anything is written: no half-written task directory.
    paths = {domain: Path(path).resolve() for domain, path in mcq_files.items()}
    for domain, path in paths.items():
        if not path.is_file():
            raise InputError(path, None, f"MCQ file of domain {domain!r} not found")
        _check_mcq_file(path, formats)
    names = []
    for domain, path in paths.items():
        for fmt in formats:
            name = builtin_task_name(domain, fmt)
            _write_yaml(out_dir / f"{name}.yaml", _builtin_config(name, fmt, path))
            names.append(name)
    check_tasks_resolve(out_dir, names)
    return names


# --------------------------------------------------------------------------------------------
# Paper tasks: published files -> lm-eval's field layout
#
# lm-eval 0.4.13's tasks read these fields (from its YAMLs and their !function helpers):
#   medmcqa         question, opa..opd, cop (0-3)      test_split: validation (the dev set)
#   medqa_4options  sent1, ending0..ending3, label (0-3)  test_split: test
#   mmlu_<subject>  question, choices (4), answer (0-3)   test_split: test


def _read_mmlu_csv(path: Path, subject: str) -> list[dict]:
    """An MMLU CSV (no header; question, A, B, C, D, answer letter), as cais/mmlu rows."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        while True:
            line = reader.line_num + 1  # a quoted field may span lines: report where the row starts
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise InputError(path, line, f"unreadable CSV row ({exc})") from None
            if not row:
                continue
            if len(row) != 6:
                raise InputError(path, line, f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}")
            answer = row[5].strip()
            if answer not in LETTERS:
                raise InputError(path, line, f"answer {answer!r} is not one of A, B, C, D")
            rows.append({"question": row[0], "subject": subject, "choices": row[1:5],
                         "answer": LETTERS.index(answer)})
    return rows


def _medmcqa_cop_base(path: Path, records: list[tuple[int, dict]], cop_base: int | None) -> int:
    """Whether ``cop`` counts from 0 (the Hugging Face copy) or 1 (the original release).

    The original MedMCQA files (train/dev/test.json, JSON lines) number the correct option 1-4;
    openlifescienceai/medmcqa, which lm-eval loads, numbers it 0-3. A real file has both ends of
    its range, so a 0 or a 4 tells which; a file with only 1-3 needs ``cop_base`` said.
    """
    if cop_base is not None:
        if cop_base not in (0, 1):
            raise ConfigError(f"medmcqa cop_base must be 0 or 1, got {cop_base!r}")
        return cop_base
    values = {record["cop"] for _, record in records}
    if 0 in values and 4 in values:
        line = next(line for line, record in records if record["cop"] == 4)
        raise InputError(path, line, "cop 4 in a file that also has cop 0 (0-3 and 1-4 numbering mixed)")
    if 0 in values:
        return 0
    if 4 in values:
        return 1
    raise InputError(path, None, "cannot tell whether cop counts 0-3 (Hugging Face) or 1-4 (original "
                                 "release): no 0 or 4 in the file; pass medmcqa_cop_base")


def _read_medmcqa(path: Path, cop_base: int | None) -> list[dict]:
    """MedMCQA JSON lines (question, opa..opd, cop), as openlifescienceai/medmcqa rows (cop 0-3)."""
    fields = {"question": str, "opa": str, "opb": str, "opc": str, "opd": str, "cop": int}
    records = []
    for line, record in _jsonl_records(path):
        _require(record, path, line, fields)
        if not 0 <= record["cop"] <= 4:
            raise InputError(path, line, f"cop {record['cop']} is not an option number")
        records.append((line, record))
    base = _medmcqa_cop_base(path, records, cop_base)
    rows = []
    for line, record in records:
        cop = record["cop"] - base
        if not 0 <= cop < 4:
            raise InputError(path, line, f"cop {record['cop']} is out of range {base}-{base + 3}")
        rows.append({"question": record["question"], **{k: record[k] for k in ("opa", "opb", "opc", "opd")},
                     "cop": cop})
    return rows


def _read_medqa(path: Path) -> list[dict]:
    """MedQA 4-option JSON lines (question, options {A..D}, answer_idx), as
    GBaker/MedQA-USMLE-4-options-hf rows (sent1, ending0..3, label)."""
    rows = []
    for line, record in _jsonl_records(path):
        _require(record, path, line, {"question": str, "options": dict, "answer_idx": str})
        options = record["options"]
        if sorted(options) != list(LETTERS) or not all(isinstance(v, str) for v in options.values()):
            raise InputError(path, line, f"options should map A, B, C, D to strings, got keys {sorted(options)}")
        if record["answer_idx"] not in LETTERS:
            raise InputError(path, line, f"answer_idx {record['answer_idx']!r} is not one of A, B, C, D")
        rows.append({"sent1": record["question"], **{f"ending{i}": options[k] for i, k in enumerate(LETTERS)},
                     "label": LETTERS.index(record["answer_idx"])})
    return rows


def read_published(name: str, path: str | os.PathLike, medmcqa_cop_base: int | None = None) -> list[dict]:
    """Rows of lm-eval task ``name``'s layout from the dataset's published file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, f"data file of {name} not found")
    if name == "medmcqa":
        rows = _read_medmcqa(path, medmcqa_cop_base)
    elif name == "medqa_4options":
        rows = _read_medqa(path)
    elif name.startswith("mmlu_"):
        rows = _read_mmlu_csv(path, name.removeprefix("mmlu_"))
    else:
        raise ConfigError(f"no reader for benchmark {name!r} (medmcqa, medqa_4options, mmlu_<subject>)")
    if not rows:
        raise InputError(path, None, "no questions")
    return rows


def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


# medmcqa and medqa_4options have no cloze variant in lm-eval 0.4.13; ours asks the question as
# MMLU's continuation variant does ("Question: ...\nAnswer:") and scores each option's text.
_OWN_CLOZE = {
    "medmcqa": {"doc_to_text": "Question: {{question.strip()}}\nAnswer:",
                "doc_to_choice": "{{[opa, opb, opc, opd]}}"},
    "medqa_4options": {"doc_to_text": "Question: {{sent1.strip()}}\nAnswer:",
                       "doc_to_choice": "{{[ending0, ending1, ending2, ending3]}}"},
}


def builtin_yaml_path(name: str, fmt: str) -> Path:
    """The lm-eval YAML our copy of task ``name`` in format ``fmt`` includes.

    MMLU's cloze format is lm-eval's continuation variant (``mmlu_<subject>_continuation``);
    for MedMCQA and MedQA it is the letter task with the prompt overridden (:data:`_OWN_CLOZE`).
    The YAML's ``task`` is checked, so a moved file in another lm-eval version fails here.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    _check_format(fmt)
    tasks = _lm_eval_tasks_dir()
    if name == "medmcqa":
        path, expected = tasks / "medmcqa" / "medmcqa.yaml", name
    elif name == "medqa_4options":
        path, expected = tasks / "medqa" / "medqa.yaml", name
    elif name.startswith("mmlu_") and fmt == "letter":
        path, expected = tasks / "mmlu" / "default" / f"{name}.yaml", name
    elif name.startswith("mmlu_"):
        path, expected = tasks / "mmlu" / "continuation" / f"{name}.yaml", f"{name}_continuation"
    else:
        raise ConfigError(f"benchmark {name!r} is not a paper task (medmcqa, medqa_4options, mmlu_<subject>)")
    if not path.is_file():
        raise ConfigError(f"benchmark {name!r}: lm-eval has no {path}")
    found = load_yaml(path, resolve_func=False).get("task")
    if found != expected:
        raise ConfigError(f"benchmark {name!r}: {path} defines task {found!r}, expected {expected!r}")
    return path


def _paper_config(name: str, fmt: str, data_path: Path) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    base = builtin_yaml_path(name, fmt)
    split = load_yaml(base, resolve_func=False)["test_split"]
    config: dict[str, Any] = {
        "include": str(base),
        "task": paper_task_name(name, fmt),
        "tag": None,  # keep our copy out of lm-eval's tags (mmlu_stem_tasks, ...)
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(data_path)}},
        # Only the evaluated split exists locally; the task builds its few-shot pool at
        # construction even for zero-shot runs, so the other splits must not be named.
        "training_split": None,
        "validation_split": None,
        "fewshot_split": None,
        "test_split": split,
    }
    if fmt == "cloze" and name in _OWN_CLOZE:
        config.update(_OWN_CLOZE[name])
    return config


def write_paper_tasks(local: dict[str, str | os.PathLike], out_dir: str | os.PathLike,
                      formats: Sequence[str] = FORMATS, medmcqa_cop_base: int | None = None) -> list[str]:
    """Write task YAMLs for the paper's benchmarks from local published files.

    Args:
        local: {lm-eval task name: file}: ``medmcqa`` (a JSON-lines file of the original
            release, e.g. its dev.json, or a JSON-lines export of the Hugging Face copy),
            ``medqa_4options`` (the 4-option JSONL, e.g. ``phrases_no_exclude_test.jsonl``),
            ``mmlu_<subject>`` (``<subject>_test.csv``). See :func:`mmlu_files`.
        out_dir: where the YAMLs go; the converted data go to ``out_dir/data``.
        formats: ``letter`` (lm-eval's own task) and/or ``cloze`` (see :func:`builtin_yaml_path`).
        medmcqa_cop_base: 0 or 1 if ``cop`` numbering cannot be told from the file.

    Each YAML includes lm-eval's built-in YAML by absolute path and overrides the data source
    (``dataset_path: json``, ``dataset_name: null``, the test split's ``data_files``), the
    name (``tokenfilter_<name>_<format>``), ``tag: null`` and the unused splits. Returns the names.
    """
    for fmt in formats:
        _check_format(fmt)
    out_dir = Path(out_dir).resolve()
    # Every file is read before anything is written: no half-written task directory.
    converted = {name: read_published(name, path, medmcqa_cop_base) for name, path in local.items()}
    names = []
    for name, rows in converted.items():
        data_path = out_dir / "data" / f"{name}.jsonl"
        write_jsonl(data_path, rows)
        for fmt in formats:
            task = paper_task_name(name, fmt)
            _write_yaml(out_dir / f"{task}.yaml", _paper_config(name, fmt, data_path))
            names.append(task)
    check_tasks_resolve(out_dir, names)
    return names


def mmlu_files(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, Path]:
    """{``mmlu_<subject>``: ``directory/<subject>_test.csv``} for the MMLU names among ``names``
    (the layout of MMLU's published ``data/test`` folder)."""
    return {n: Path(directory) / f"{n.removeprefix('mmlu_')}_test.csv" for n in names if n.startswith("mmlu_")}


def check_paper_tasks_resolve(names: Sequence[str]) -> dict[str, str]:
    """Check the pinned lm-eval knows each paper task ``names`` and that its registered YAML is
    the one :func:`builtin_yaml_path` includes (both formats). Slow: builds the default index
    (about 8 s). Returns {name: its YAML path}."""
    from importlib.metadata import version

    from lm_eval.tasks import TaskManager

    index = TaskManager().task_index
    problems = []
    for name in names:
        # The letter copy includes lm-eval's task itself; MMLU's cloze copy its continuation variant.
        registered = {"letter": name}
        if name.startswith("mmlu_"):
            registered["cloze"] = f"{name}_continuation"
        for fmt, task in registered.items():
            entry = index.get(task)
            if entry is None or entry.yaml_path is None:
                problems.append(f"{task}: not a task of lm-eval {version('lm_eval')}")
                continue
            try:
                expected = builtin_yaml_path(name, fmt)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            if Path(entry.yaml_path).resolve() != expected.resolve():
                problems.append(f"{task}: lm-eval registers {entry.yaml_path}, we include {expected}")
    if problems:
        raise ConfigError("paper tasks do not resolve in lm-eval:\n  " + "\n  ".join(problems))
    return {name: str(index[name].yaml_path) for name in names}


# --------------------------------------------------------------------------------------------
# Evaluation


def _metric(values: dict, key: str) -> float | None:
    """A metric of lm-eval's results ("acc,none"), None where lm-eval has none ("N/A": n = 1)."""
    value = values.get(f"{key},none")
    return float(value) if isinstance(value, (int, float)) else None


def evaluate_models(model_dirs: dict[str, str | os.PathLike], tokenizer_path: str | os.PathLike,
                    task_dir: str | os.PathLike, tasks: Sequence[str], batch_size: int,
                    limit: int | float | None = None, device: str | None = None) -> dict[str, dict[str, dict]]:
    """Zero-shot accuracy of each model on each task of ``task_dir``.

    One lm-eval ``simple_evaluate`` per model, through ``HFLM`` on the loaded model object with
    our tokenizer and the model's ``block_size`` as its context length. Scoring is by
    log-likelihood of each option, so results are deterministic.

    Returns {model name: {task: {"acc", "acc_stderr", "n", "chance"} plus "acc_norm" and
    "acc_norm_stderr" for tasks that report it}}. A stderr is None when n is 1.
    """
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tokenfilter.data.tokenizer import load_tokenizer
    from tokenfilter.model.checkpoint import load_hf_model

    tasks = list(tasks)
    if not tasks:
        raise ConfigError("evaluate_models: no tasks given")
    check_tasks_resolve(task_dir, tasks)  # fail before any model is loaded
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    tokenizer = load_tokenizer(tokenizer_path).hf_tokenizer()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    results: dict[str, dict[str, dict]] = {}
    for model_name, model_dir in model_dirs.items():
        model = load_hf_model(model_dir, device)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size,
                  max_length=model.config.block_size)
        out = simple_evaluate(model=lm, tasks=tasks, num_fewshot=0, limit=limit, task_manager=manager,
                              log_samples=False)
        per_task = {}
        for task in tasks:
            values = out["results"][task]
            row = {"acc": _metric(values, "acc"), "acc_stderr": _metric(values, "acc_stderr"),
                   "n": int(out["n-samples"][task]["effective"]), "chance": CHANCE}
            if "acc_norm,none" in values:
                row.update(acc_norm=_metric(values, "acc_norm"), acc_norm_stderr=_metric(values, "acc_norm_stderr"))
            per_task[task] = row
        results[model_name] = per_task
        del lm, model  # one model in memory at a time
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results
