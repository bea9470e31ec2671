"""The package's shape stays what docs/architecture.md says: wings by role that import only downward, no two modules
of one name, few files at the top, no class past 300 lines nor function past 80, and outside attnkit.tasks no branch
on a task's name or a model's class (the task answers). Read from the source with ast: nothing is imported or run."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "attnkit"
# each wing and the wings below it that it may import (a wing may always import itself); the ground is the modules
# directly in attnkit/ other than the face
BELOW = {
    "ground": set(),
    "config": {"ground"},
    "nn": {"config", "ground"},
    "data": {"config", "ground"},
    "interop": {"nn", "data", "config", "ground"},
    "tasks": {"interop", "nn", "data", "config", "ground"},
    "inference": {"tasks", "interop", "nn", "data", "config", "ground"},
    "training": {"inference", "tasks", "interop", "nn", "data", "config", "ground"},
    "apps": {"training", "inference", "tasks", "interop", "nn", "data", "config", "ground"},
}
FACE = {"__init__.py", "__main__.py"}  # what a user imports and runs: it may import every wing, and none imports it
# the wings that ask tasks rather than branch on them (tasks, nn and interop are where such knowledge lives)
ASKING = ("training", "inference", "apps", "ground")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def wing(path: Path) -> str:
    """The wing of a module of the package: its folder under attnkit/, or the ground (or face) at the top."""
    parts = path.relative_to(PACKAGE).parts
    if len(parts) == 1:
        return "face" if parts[0] in FACE else "ground"
    return parts[0]


def target(name: str) -> Path | None:
    """The module or package file that the dotted `name` imports, if it is attnkit's."""
    if name != "attnkit" and not name.startswith("attnkit."):
        return None
    base = ROOT.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported(path: Path) -> list[tuple[int, Path]]:
    """Every attnkit module that `path` imports, at any depth (inside functions, under TYPE_CHECKING), with its line.
    `from attnkit import name` imports the module `name` if there is one, else the face."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, target(alias.name)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                module = target(f"{node.module}.{alias.name}") or target(node.module)
                found.append((node.lineno, module))
    return [(line, module) for line, module in found if module is not None]


def test_every_wing_is_known():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(BELOW) - {"ground"}


def test_every_import_goes_down_the_wings():
    wrong = []
    for path in modules():
        here = wing(path)
        for line, module in imported(path):
            there = wing(module)
            allowed = here == "face" or there == here or there in BELOW.get(here, set())
            if not allowed or (there == "face" and here != "face"):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {module.relative_to(ROOT)} ({there})")
    assert not wrong, "\n".join(wrong)


def test_a_rule_that_an_import_breaks_is_caught(tmp_path):
    """The check above can fail: an nn module that imported the tasks would be named."""
    module = PACKAGE / "nn" / "attention.py"
    assert wing(module) == "nn" and wing(PACKAGE / "tasks" / "base.py") not in BELOW["nn"]
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from attnkit.tasks.base import Task\n")
    assert [m.relative_to(ROOT).as_posix() for _, m in imported(fake)] == ["attnkit/tasks/base.py"]


def test_no_two_modules_share_a_name():
    names = [p.stem for p in modules() if p.name != "__init__.py"]
    packages = {p.parent.name for p in modules() if p.name == "__init__.py"}
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert not set(names) & packages, sorted(set(names) & packages)


def test_few_files_stay_at_the_top():
    files = [p.name for p in PACKAGE.iterdir() if p.is_file()]
    assert len(files) <= 8, files


def test_no_class_is_over_300_lines():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert not long, long


def test_no_function_is_over_80_lines():
    """A function past about 60 lines is usually several ideas (routes or subcommands piling up): 80 is the ceiling."""
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert not long, long


def model_and_task_classes() -> set[str]:
    """Every class attnkit.nn and attnkit.tasks define: the models and the task shapes."""
    names = set()
    for folder in ("nn", "tasks"):
        for path in (PACKAGE / folder).glob("*.py"):
            names |= {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}
    return names


def branch_reason(test: ast.AST, classes: set[str]) -> str | None:
    """Why the condition `test` branches on a task or a model, or None."""
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr == "name" and "task" in ast.unparse(node.value).lower():
            return "a task's name"
        if isinstance(node, ast.Attribute) and node.attr == "arch":
            return "a model's architecture"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if named & classes:
                return "a model's or task's class"
        probe = (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
        )
        if probe and re.search(r"model|source|module", ast.unparse(node.args[0])):
            return "an attribute a model may lack"
        if isinstance(node, ast.Compare) and re.fullmatch(r"(\w+\.)*task", ast.unparse(node.left)):
            if any(isinstance(c, ast.Constant) and c.value is None for c in node.comparators):
                return "a missing task"
    return None


def branches(path: Path, classes: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        tests = [node.test] if isinstance(node, (ast.If, ast.IfExp, ast.While)) else []
        tests += node.ifs if isinstance(node, ast.comprehension) else []
        for test in tests:
            reason = branch_reason(test, classes)
            if reason:
                found.append(f"{path.name}:{test.lineno}: on {reason}: {ast.unparse(test)[:80]}")
    return found


def test_outside_the_tasks_nothing_branches_on_a_task_or_a_model():
    classes = model_and_task_classes()
    found = [
        f"{path.parent.name}/{line}" for path in modules() if wing(path) in ASKING for line in branches(path, classes)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "condition",
    [
        "task.name == 'tag'",
        "isinstance(model, EncoderDecoder)",
        "config.arch == 'decoder'",
        "pipeline.task is None",
        "getattr(model, 'shapes', None) is not None",
    ],
)
def test_a_branch_on_a_task_or_a_model_is_caught(tmp_path, condition):
    probe = tmp_path / "probe.py"
    probe.write_text(f"if {condition}:\n    pass\n")
    classes = model_and_task_classes()
    assert "EncoderDecoder" in classes and len(branches(probe, classes)) == 1


def test_no_test_module_imports_another():
    tests = ROOT / "tests"
    wrong = []
    for path in sorted(tests.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests"):
                if node.module.split(".")[-1].startswith("test_"):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}")
    assert not wrong, wrong
