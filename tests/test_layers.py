"""The package's layers import one way: each module imports only from its own layer and the layers below it, at
module level (an import inside a function to dodge a cycle is refused too)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "src" / "rt4ksr"
# bottom to top; a module belongs to the first layer whose prefix its dotted name starts with
LAYERS = [
    ("core", ["rt4ksr.core"]),
    ("models", ["rt4ksr.models"]),
    ("kernels", ["rt4ksr.kernels"]),
    ("quality", ["rt4ksr.quality"]),
    ("data", ["rt4ksr.data"]),
    ("inference", ["rt4ksr.inference"]),
    ("training", ["rt4ksr.training"]),
    ("measure", ["rt4ksr.measure"]),
    ("commands", ["rt4ksr"]),
]
# modules imported where they are used because they import an optional dependency at their top: importing the
# kernels' network (and the upscaler) must not need triton
LAZY_OK = {"rt4ksr.kernels.conv": "triton", "rt4ksr.kernels.fused": "triton", "rt4ksr.kernels.persistent": "triton"}


def layer_of(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) of every rt4ksr import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rt4ksr"):
            found.append((node.module, node.lineno, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top) for a in node.names if a.name.startswith("rt4ksr")]
    return found


def test_imports_flow_down_the_layers_at_module_level():
    bad = []
    for name, path in sorted(modules().items()):
        own = layer_of(name)
        for target, line, top in imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if layer_of(target) > own:
                bad.append(f"{where}: {name} ({LAYERS[own][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
            elif not top and target not in LAZY_OK:
                bad.append(f"{where}: {name} imports {target} inside a function")
    assert not bad, "\n".join(bad)


def test_the_package_never_reaches_into_scripts():
    """scripts/ serve developers (the peer table, probes): the package imports none of them, and puts no folder on
    sys.path to do so (what a script shares with the package lives in the package)."""
    scripts = {p.stem for p in (ROOT / "scripts").glob("*.py")} | {"scripts"}
    bad = []
    for path in sorted(modules().values()):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                bad += [f"{where}: imports {a.name}" for a in node.names if a.name.split(".")[0] in scripts]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in scripts:
                    bad.append(f"{where}: imports from {node.module}")
            elif isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                    and node.value.id == "sys":
                bad.append(f"{where}: touches sys.path")
    assert not bad, "\n".join(bad)


def test_the_lazy_imports_are_the_ones_an_optional_dependency_needs():
    for module, dependency in LAZY_OK.items():
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        assert f"import {dependency}" in path.read_text(), \
            f"{module} no longer needs {dependency}: import it at the top"


def test_only_commands_sit_at_the_top():
    """The package's top level holds the commands (and the console entry), nothing a lower layer needs."""
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "cli", "command"}
    for name in top:
        text = (PACKAGE / f"{name}.py").read_text()
        assert "def main(" in text, f"rt4ksr/{name}.py is not a command (no main)"


def test_every_package_folder_is_a_regular_package():
    """setuptools' find_packages ships only folders with an __init__.py: one without it vanishes from the wheel."""
    missing = [str(d.relative_to(ROOT)) for d in PACKAGE.rglob("*") if d.is_dir() and any(d.glob("*.py"))
               and not (d / "__init__.py").is_file()]
    assert not missing, f"no __init__.py (left out of the wheel): {missing}"
