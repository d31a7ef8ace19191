"""The package's structure: layers that only point down (import-linter's contracts in pyproject.toml),
every project import at the top of its file, and console scripts that resolve."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from nas.cli.main import main
from nas.core.cli import command
from profilers.plugin.cli import dispatch

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "nas", "profilers")


def test_import_contracts_hold():
    # in a process of its own: import-linter configures logging, which would silence this one's loggers
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_every_module_and_subpackage_of_profilers_has_its_layer():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    inside = next(c for c in contracts if c.get("containers") == ["profilers"])
    placed = {name.strip() for layer in inside["layers"] for name in layer.replace(":", "|").split("|")}
    here = {p.stem for p in (ROOT / "profilers").glob("*.py") if p.stem != "__init__"}
    here |= {p.name for p in (ROOT / "profilers").iterdir() if (p / "__init__.py").exists()}
    assert here == placed, f"not placed in a layer: {sorted(here - placed)}; gone: {sorted(placed - here)}"


def _nested_project_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            if nested and isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                if child.__class__ is ast.ImportFrom and child.level:
                    names = ["." * child.level + (child.module or "")]
                for n in names:
                    if n.startswith(".") or n.split(".")[0] in PACKAGES:
                        found.append(f"{path.relative_to(ROOT)}:{child.lineno} imports {n} inside a function")
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_project_import_is_at_the_top_of_its_file():
    problems = [p for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py")) for p in _nested_project_imports(f)]
    assert not problems, "\n".join(problems)


def test_console_scripts_resolve():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"effv2-nas", "effv2-profile"} <= set(scripts)
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


@pytest.mark.parametrize("argv,code", [(["--help"], 0), ([], 2), (["nonsense"], 2)])
def test_effv2_nas_dispatches_or_says_how(argv, code, capsys):
    assert main(argv) == code
    text = capsys.readouterr()
    assert "search" in text.out + text.err and "validate" in text.out + text.err


def test_effv2_nas_runs_a_command(capsys):
    assert main(["describe", "--model", "s0", "--img-size", "64", "--num-classes", "10"]) == 0
    assert "params:" in capsys.readouterr().out


@pytest.mark.parametrize("argv,code", [(["--help"], 0), ([], 2), (["nonsense"], 2)])
def test_effv2_profile_dispatches_or_says_how(argv, code, capsys):
    assert dispatch(argv) == code
    text = capsys.readouterr()
    assert "onnxruntime" in text.out + text.err


def test_effv2_profile_runs_a_runtime_command(capsys):
    assert dispatch(["onnxruntime", "--list-devices"]) == 0
    assert "local-cpu" in capsys.readouterr().out


def test_a_command_piped_into_a_reader_that_stops_exits_quietly():
    @command
    def prints(argv):
        raise BrokenPipeError(32, "Broken pipe")
    assert prints([]) == 0
