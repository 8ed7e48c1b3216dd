"""The code's shape, as ARCHITECTURE.md states it: short functions, one writer of status.json, one
list of samplers. (Who may import whom is import-linter's: pyproject.toml [tool.importlinter].)"""

import ast
from pathlib import Path

from vaecore import catalog

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("vaecore/**/*.py"), *ROOT.glob("jobs/**/*.py")])
MAX_LINES = 40


def strings(path: Path) -> list[str]:
    """Every string constant in a module that is not a docstring."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def test_no_function_in_the_library_or_the_jobs_is_longer_than_40_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_train_py_stays_under_300_lines():
    assert len((ROOT / "vaecore" / "train.py").read_text().splitlines()) < 300


def test_only_the_layout_module_names_the_trial_and_sweep_files():
    owned = {"status.json", "config.json", "params.json", "summary.json", "manifest.json", "metrics.jsonl"}
    others = {
        str(p.relative_to(ROOT)): sorted(owned & set(strings(p))) for p in SOURCES if p.name != "layout.py"
    }
    assert {k: v for k, v in others.items() if v} == {}


def test_the_samplers_are_listed_once_in_the_catalogue():
    names = {s.name for s in catalog.SAMPLERS}
    assert {"prior", "aggregate", "gmm", "two_stage"} <= names
    spelled = {
        str(p.relative_to(ROOT)): sorted(names & set(strings(p))) for p in SOURCES if p.name != "catalog.py"
    }
    # post/trial.py registers one fit function per sampler name (FITS); nothing else lists them
    assert {k: v for k, v in spelled.items() if v} == {"vaecore/post/trial.py": sorted(names)}
