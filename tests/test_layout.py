"""The architecture as the code holds it: one package per role, imports in one direction, every default and
fact in one module, and the doors (command line, App forms, Python) built from the jobs' settings."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fiftyone_ram"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every ``fiftyone_ram`` module a file imports (function-level imports too), as written."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fiftyone_ram"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fiftyone_ram"))
    return found


def test_each_role_has_its_package():
    """The FiftyOne model integration, the dataset driver and App support are packages of their own."""
    model = {p.stem for p in (PACKAGE / "fiftyone").glob("*.py")} - {"__init__"}
    assert model <= {"model", "inputs", "outputs", "zoo", "onnx_model", "comparator"}, model
    comparators = {p.stem for p in (PACKAGE / "comparators").glob("*.py")}
    assert {"choice", "scorer", "dual_encoder", "grounding", "tagger_scorer"} <= comparators
    driver = {p.stem for p in (PACKAGE / "driver").glob("*.py")}
    assert {"tagging", "claims", "runs", "writer", "local_executor", "ray_executor"} <= driver
    assert {p.stem for p in (PACKAGE / "app").glob("*.py")} >= {"forms", "execution", "field_choices"}


# (package prefix, the packages it must not import): the direction of the layers, lowest first.
LAYERS = [
    ("fiftyone_ram.models", ("fiftyone_ram.tagger", "fiftyone_ram.fiftyone", "fiftyone_ram.driver",
                             "fiftyone_ram.app", "fiftyone_ram.cli", "fiftyone_ram.engine",
                             "fiftyone_ram.evaluation", "fiftyone_ram.training", "fiftyone_ram.comparators",
                             "fiftyone_ram.pipeline")),
    ("fiftyone_ram.comparators", ("fiftyone_ram.fiftyone", "fiftyone_ram.driver", "fiftyone_ram.app",
                                  "fiftyone_ram.cli", "fiftyone_ram.engine", "fiftyone_ram.evaluation",
                                  "fiftyone_ram.training", "fiftyone_ram.pipeline")),
    ("fiftyone_ram.fiftyone", ("fiftyone_ram.driver", "fiftyone_ram.cli", "fiftyone_ram.engine",
                               "fiftyone_ram.evaluation", "fiftyone_ram.training", "fiftyone_ram.pipeline")),
    ("fiftyone_ram.driver", ("fiftyone_ram.app", "fiftyone_ram.cli", "fiftyone_ram.engine",
                             "fiftyone_ram.evaluation", "fiftyone_ram.training", "fiftyone_ram.pipeline")),
    ("fiftyone_ram.engine", ("fiftyone_ram.app", "fiftyone_ram.cli", "fiftyone_ram.training",
                             "fiftyone_ram.pipeline")),
    ("fiftyone_ram.evaluation", ("fiftyone_ram.app", "fiftyone_ram.cli", "fiftyone_ram.engine",
                                 "fiftyone_ram.training", "fiftyone_ram.pipeline")),
    ("fiftyone_ram.training", ("fiftyone_ram.app", "fiftyone_ram.cli", "fiftyone_ram.engine",
                               "fiftyone_ram.pipeline")),
    # the pipeline chains the jobs: it sits above them, below the doors
    ("fiftyone_ram.pipeline", ("fiftyone_ram.app", "fiftyone_ram.cli")),
]


@pytest.mark.parametrize(("package", "forbidden"), LAYERS, ids=[layer[0] for layer in LAYERS])
def test_imports_go_one_way(package, forbidden):
    bad = []
    for name, path in MODULES.items():
        if name == package or name.startswith(package + "."):
            bad += [f"{name} imports {target}" for target in sorted(_imports(path))
                    if any(target == f or target.startswith(f + ".") for f in forbidden)]
    assert not bad, "\n".join(bad)


def test_the_comparators_math_knows_nothing_of_fiftyone():
    """The comparators (CLIP, SigLIP, BLIP, Grounding-DINO, our taggers over any classes) are torch and
    transformers only; their FiftyOne ``Model`` is ``fiftyone_ram.fiftyone.comparator``."""
    bad = []
    for name, path in MODULES.items():
        if not name.startswith("fiftyone_ram.comparators"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{name} imports {n}" for n in names if n == "fiftyone" or n.startswith("fiftyone.")]
    assert not bad, bad


def test_nothing_in_the_library_imports_the_doors():
    """The command line and App support are doors: the library below them never imports them (the FiftyOne zoo
    hooks, which show a form, are the one place that reads the App's form helpers)."""
    doors = ("fiftyone_ram.cli", "fiftyone_ram.app")
    allowed = {"fiftyone_ram.fiftyone.zoo"}  # the zoo source's resolve_input is a form
    bad = []
    for name, path in MODULES.items():
        if name.startswith(doors) or name in allowed:
            continue
        bad += [f"{name} imports {t}" for t in sorted(_imports(path)) if t.startswith(doors)]
    assert not bad, "\n".join(bad)


def _literals() -> dict[object, set[str]]:
    """Every string and float constant of the package's code (docstrings left out) -> the modules holding it."""
    found: dict[object, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docstrings and isinstance(node.value, (str, float)):
                found.setdefault(node.value, set()).add(name)
    return found


def test_every_hub_name_default_and_fact_is_in_one_module():
    from fiftyone_ram import hub_models
    from fiftyone_ram.models.registry import DEFAULT_VARIANT, FALLBACK_THRESHOLD
    from fiftyone_ram.tagger_spec import BATCH_SIZE

    literals = _literals()
    facts = {value: "fiftyone_ram.hub_models" for name, value in vars(hub_models).items() if name.isupper()}
    facts[DEFAULT_VARIANT] = "fiftyone_ram.models.registry"
    facts[FALLBACK_THRESHOLD] = "fiftyone_ram.models.registry"
    for value, home in facts.items():
        assert literals.get(value) == {home}, f"{value!r} is written in {sorted(literals.get(value, ()))}"
    # The tagger's batch size: every job that runs a tagger over images takes it from the spec.
    from fiftyone_ram.driver.tagging import TagJob
    from fiftyone_ram.engine.cleaning import CleanJob
    from fiftyone_ram.engine.generation import GenerateJob
    from fiftyone_ram.evaluation.benchmarks import BenchmarkJob
    from fiftyone_ram.evaluation.compare_job import CompareJob

    assert {job.default("batch_size") for job in (TagJob, GenerateJob, CleanJob, BenchmarkJob, CompareJob)} == \
        {BATCH_SIZE}


def test_no_hub_name_is_written_in_the_doors():
    """The doors' help texts and defaults read the facts; none types a hub id or a variant name."""
    from fiftyone_ram import hub_models
    from fiftyone_ram.models.registry import default_cfgs

    names = [v for k, v in vars(hub_models).items() if k.isupper()] + list(default_cfgs)
    doors = [p for p in [*(ROOT / "operators").glob("*.py"), *(PACKAGE / "cli").glob("*.py"),
                         *(PACKAGE / "app").glob("*.py"), *(ROOT / "zoo").glob("*.py")]]
    bad = [f"{p.relative_to(ROOT)}: {n}" for p in doors for n in names if n in p.read_text(encoding="utf-8")]
    assert not bad, bad


def _job_classes():
    from fiftyone_ram.driver.ray_executor import ExecutorSettings
    from fiftyone_ram.driver.tagging import TagJob
    from fiftyone_ram.engine.cleaning import CleanJob
    from fiftyone_ram.engine.generation import GenerateJob
    from fiftyone_ram.engine.review import ReviewJob
    from fiftyone_ram.evaluation.benchmarks import BenchmarkJob
    from fiftyone_ram.evaluation.compare_job import CompareJob
    from fiftyone_ram.evaluation.job import EvaluateJob
    from fiftyone_ram.pipeline.spec import PipelineJob, TrainingStage
    from fiftyone_ram.training.job import FinetuneJob
    from fiftyone_ram.training.settings import FinetuneSettings
    from fiftyone_ram.vocabulary.spec import VocabularySpec

    return [TagJob, GenerateJob, CleanJob, ReviewJob, EvaluateJob, BenchmarkJob, CompareJob, FinetuneJob,
            FinetuneSettings, VocabularySpec, ExecutorSettings, PipelineJob, TrainingStage]


def test_the_command_line_options_are_the_jobs_settings():
    """Every option named after a job's setting has that setting's default (or none: a given-only option,
    where the setting's default then applies, or a required one): no command states a default of its own."""
    import click

    from fiftyone_ram.cli import main
    from fiftyone_ram.jobs import default_of, settings_of

    defaults: dict[str, list] = {}
    for job in _job_classes():
        for f in settings_of(job):
            try:
                defaults.setdefault(f.name, []).append(default_of(job, f.name))
            except KeyError:
                defaults.setdefault(f.name, []).append("<required>")
    checked, wrong = 0, []
    for command in main.commands.values():
        for sub in (command.commands.values() if isinstance(command, click.Group) else [command]):
            for param in sub.params:
                if param.name not in defaults or param.default in (None, ()) or not param.default.__hash__ or \
                        type(param.default).__name__ == "Sentinel":  # click's unset default
                    continue
                got = param.default
                if isinstance(got, tuple) and got and isinstance(got[0], tuple):
                    got = got[0]  # a repeatable list option holds the default as its one occurrence
                want = defaults[param.name]
                if got in want or (isinstance(got, tuple) and any(isinstance(w, tuple) and w == got for w in want)):
                    checked += 1
                else:
                    wrong.append(f"{sub.name} {param.name}: {got!r} not in {want!r}")
    assert not wrong, wrong
    assert checked >= 30


def test_jobs_refuse_bad_values_in_one_line_naming_the_option():
    from fiftyone_ram.driver.tagging import TagJob
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.evaluation.job import EvaluateJob

    for make, words in ((lambda: TagJob(batch_size=0), "batch_size (CLI: --batch-size) must be at least 1"),
                        (lambda: TagJob(threshold=1.5), "threshold (CLI: --threshold)"),
                        (lambda: TagJob(resume=True, overwrite=True), "not both"),
                        (lambda: EvaluateJob(pred_field="a", gt_field="a"), "both the predictions and"),
                        (lambda: EvaluateJob(pred_field="a", gt_field="b", top_k=(0,)), "top_k")):
        with pytest.raises(UserError) as info:
            make()
        assert words in str(info.value) and "\n" not in str(info.value)


def test_the_forms_are_built_from_the_same_settings(tmp_path):
    """A form field built from a setting has its default, range and choices."""
    import fiftyone.operators.types as types

    from fiftyone_ram.app.forms import add_setting
    from fiftyone_ram.driver.tagging import TagJob
    from fiftyone_ram.engine.cleaning import CleanJob

    inputs = types.Object()
    batch = add_setting(inputs, TagJob, "batch_size", {})
    rule = add_setting(inputs, CleanJob, "rule", {})
    assert batch.default == TagJob.default("batch_size") and batch.type.min == 1
    assert rule.default == CleanJob.default("rule") and set(rule.type.values) == {"adaptive", "quota"}


def test_one_status_vocabulary_for_every_run():
    """Every run's status is one of the run store's, set through it (no module writes a status word itself)."""
    from fiftyone_ram.driver.runs import STATUSES

    assert STATUSES == ("running", "interrupted", "failed", "completed")
    for name, path in MODULES.items():
        if name == "fiftyone_ram.driver.runs":
            continue
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"status\s*=\s*\"(running|interrupted|failed|completed)\"", source), name
        assert '"complete"' not in source, name


def test_no_private_fiftyone_write_path():
    """The hot path and the evaluation write through FiftyOne's public API."""
    text = {name: path.read_text(encoding="utf-8") for name, path in MODULES.items()}
    for pattern in ("_reload_docs", "._bulk_write(", "sys._getframe", "object.__new__(", "gc.freeze",
                    "torch.set_num_threads(", "show_progress_bars ="):
        holders = [name for name, source in text.items() if pattern in source]
        assert not holders, f"{pattern} in {holders}"


def test_dataclass_jobs_have_help_for_every_setting():
    from fiftyone_ram.jobs import HELP

    for job in _job_classes():
        for f in dataclasses.fields(job):
            if f.name in ("changes", "skip_failures"):
                continue
            assert HELP in f.metadata, f"{job.__name__}.{f.name} has no help"
