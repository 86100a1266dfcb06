"""Imports follow one direction (docs/architecture.md): a module imports only from its own
layer or the layers below it, and no two parts of the package import each other. Every
import counts, also the lazy ones inside functions. A failure names the offending import."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "geoidec"

LAYERS: list[tuple[str, ...]] = [
    ("constants", "errors", "files", "config", "progress", "devices", "run_folder"),
    ("data", "synthetic"),
    ("tasks",),
    ("models",),
    ("checkpoint",),
    ("losses",),
    ("methods",),
    ("inference",),
    ("evaluation",),
    ("runs",),  # below training: a run writes its folder through runs/
    ("training",),
    ("export", "api"),
]
"""Bottom to top; ``cli/`` (outside the package) may import anything."""

LAYER_OF = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    """``geoidec.inference.predict`` -> ``inference``; ``None`` for ``geoidec`` itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "geoidec" and len(parts) > 1 else None


def _imports(root: Path = PACKAGE) -> list[tuple[str, str, int, str]]:
    """(importing part, imported part, line, text) of every geoidec import under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel == Path("__init__.py"):
            continue  # the package's lazy entry points (geoidec.load, ...)
        me = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                other = _part(name)
                if other is not None and other != me:
                    found.append((me, other, node.lineno, f"geoidec/{rel}:{node.lineno} "
                                  f"imports {name}"))
    return found


def test_every_part_has_a_layer() -> None:
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert parts == set(LAYER_OF), f"give these a layer: {sorted(parts ^ set(LAYER_OF))}"


def _upward(found: list[tuple[str, str, int, str]]) -> list[str]:
    return [text for me, other, _, text in found if LAYER_OF[other] > LAYER_OF[me]]


def _mutual(found: list[tuple[str, str, int, str]]) -> list[str]:
    edges: dict[tuple[str, str], str] = {}
    for me, other, _, text in found:
        edges.setdefault((me, other), text)
    return [f"{a} <-> {b}: {text} / {edges[(b, a)]}" for (a, b), text in edges.items()
            if (b, a) in edges and a < b]


def test_imports_go_down_the_layers() -> None:
    upward = _upward(_imports())
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_two_parts_import_each_other() -> None:
    mutual = _mutual(_imports())
    assert not mutual, "parts importing each other:\n" + "\n".join(mutual)


def test_the_checks_name_the_offending_imports(tmp_path: Path) -> None:
    """A fake package where inference imports evaluation (lazily, inside a function) and
    evaluation imports inference: both checks report the file, line and module."""
    (tmp_path / "inference").mkdir()
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "inference" / "predict.py").write_text(
        "import numpy\n\n\ndef f():\n    from geoidec.evaluation.evaluate import g\n")
    (tmp_path / "evaluation" / "evaluate.py").write_text("import geoidec.inference.predict\n")
    found = _imports(tmp_path)
    assert _upward(found) == ["geoidec/inference/predict.py:5 imports geoidec.evaluation.evaluate"]
    assert _mutual(found) == [
        "evaluation <-> inference: geoidec/evaluation/evaluate.py:1 imports "
        "geoidec.inference.predict / geoidec/inference/predict.py:5 imports "
        "geoidec.evaluation.evaluate"]


def test_every_subpackage_is_packaged() -> None:
    """A wheel holds only the packages pyproject.toml lists (an editable install finds the
    others anyway, so only this test notices a missing one)."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {"geoidec." + p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert found - listed == set(), f"add to [tool.setuptools] packages: {found - listed}"


MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_METHOD_CLASS_LINES = 150


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of code of a function, its signature included; its docstring, blank lines and
    comment-only lines aside."""
    span = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        span -= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(1 for n in span if lines[n - 1].strip() and not lines[n - 1].strip().startswith("#"))


def _too_long(root: Path = PACKAGE) -> list[str]:
    """Every module, function and method class over its limit, named with its length."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = f"geoidec/{path.relative_to(root)}"
        text = path.read_text()
        lines = text.splitlines()
        if len(lines) > MAX_MODULE_LINES:
            found.append(f"{rel}: {len(lines)} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _code_lines(node, lines)
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {n} lines of code "
                                 f"(at most {MAX_FUNCTION_LINES})")
            elif isinstance(node, ast.ClassDef) and path.parent.name == "methods":
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_METHOD_CLASS_LINES:
                    found.append(f"{rel}:{node.lineno} class {node.name}: {n} lines "
                                 f"(at most {MAX_METHOD_CLASS_LINES})")
    return found


def test_modules_functions_and_method_classes_stay_small() -> None:
    too_long = _too_long()
    assert not too_long, "split these by concept:\n" + "\n".join(too_long)


def test_the_size_check_names_what_is_too_long(tmp_path: Path) -> None:
    """A 61-line function (plus a docstring and comments, which do not count) and a 301-line
    module are reported; a 60-line function is not."""
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    ok = 'def ok():\n    """Doc\n    string."""\n    # a comment\n' + body
    long = "def long():\n" + body + "    x = 0\n"
    (tmp_path / "a.py").write_text(ok + "\n" + long + "\n" * 176)  # lines 1-63, 65-125
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "m.py").write_text("class M:\n" + "    x = 1\n" * 150)
    assert _too_long(tmp_path) == [
        "geoidec/a.py: 301 lines (at most 300)",
        "geoidec/a.py:65 long: 61 lines of code (at most 60)",
        "geoidec/methods/m.py:1 class M: 151 lines (at most 150)",
    ]
