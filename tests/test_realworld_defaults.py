"""The real-world degradations' defaults are written once, in ``rt4ksr.data.realworld.options``: the config
entries restate them (a changed value is marked ``# override:``), docs/degradations.md tabulates them, and the
package's modules import one way only."""

import ast
import inspect
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from helpers import ROOT
from rt4ksr.core.config import CONFIG_DIR
from rt4ksr.data.realworld import BicubicJPEG, RealESRGANDegradation, options
from rt4ksr.data.realworld.options import (
    BICUBIC_JPEG,
    FINAL,
    FIRST,
    HIGH_ORDER,
    KERNELS,
    RESIZE_KINDS,
    RESIZE_MODES,
    SECOND,
)

ENTRIES = Path(CONFIG_DIR) / "data" / "degradation"
DOCS = ROOT / "docs" / "degradations.md"
PACKAGE = Path(options.__file__).parent
WIRING = {"_target_", "scale", "seed"}  # set by the config, not defaults of the pipeline
WEIGHTS = {"kernel_probs": KERNELS, "resize_probs": RESIZE_KINDS, "resize_modes": RESIZE_MODES}
DEFAULTS = {
    "realesrgan": (RealESRGANDegradation, {**HIGH_ORDER, "first": FIRST, "second": SECOND, "final": FINAL}),
    "bicubic_jpeg": (BicubicJPEG, BICUBIC_JPEG),
}


def normal(value: Any) -> Any:
    """One form for equal values: numbers as floats, ranges as tuples, weights as dicts."""
    if isinstance(value, Mapping):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(normal(v) for v in value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value, descending into the rounds (``first``, ``second``, ``final``) but not into weights."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and k not in WEIGHTS:
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = normal(v)
    return out


def overrides(text: str) -> set[str]:
    """Dotted keys whose line carries ``# override:``, from the YAML text (the loaded config has no comments)."""
    found, stack, depth = set(), [], 0
    for line in text.splitlines():
        if depth > 0:  # inside a flow mapping or list continued from the line before
            depth += line.split("#")[0].count("{") - line.split("#")[0].count("}")
            continue
        m = re.match(r"^( *)([A-Za-z_]\w*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m[1]), m[2], m[3]
        value = rest.split(" #")[0]
        depth = value.count("{") - value.count("}")
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        if re.search(r"#\s*override:", rest):
            found.add(".".join(k for _, k in stack))
    return found


@pytest.mark.parametrize("entry", sorted(DEFAULTS))
def test_config_entries_restate_the_code_defaults_or_mark_an_override(entry):
    cls, defaults = DEFAULTS[entry]
    path = ENTRIES / f"{entry}.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert get_class(raw["_target_"]) is cls and cls.__module__ == "rt4ksr.data.realworld.pipelines"
    written = leaves({k: v for k, v in raw.items() if k not in WIRING})
    expected = leaves(defaults)
    missing, unknown = expected.keys() - written.keys(), written.keys() - expected.keys()
    # every key restated, so that every key can be set from the command line
    assert not missing and not unknown, f"{entry}.yaml: missing {sorted(missing)}, unknown {sorted(unknown)}"
    marked = overrides(path.read_text())
    assert marked <= written.keys()
    for key, value in written.items():
        if key in marked:
            assert value != expected[key], f"{entry}.yaml: {key} is marked as an override but equals the default"
        else:
            assert value == expected[key], f"{entry}.yaml: {key}={value}, the code's default is {expected[key]}"


def test_realworld_x2_sets_only_values_that_differ_from_the_defaults():
    raw = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "experiment" / "realworld_x2.yaml"))
    expected = leaves(DEFAULTS["realesrgan"][1])
    for key, value in leaves(raw["data"]["degradation"]).items():
        assert value != expected[key], f"realworld_x2 restates {key}, already the default"


def test_pipelines_take_their_defaults_from_options():
    for cls, defaults in DEFAULTS.values():
        params = inspect.signature(cls).parameters
        for key, value in defaults.items():
            if isinstance(value, Mapping):  # a round: None, read over FIRST, SECOND or FINAL
                assert params[key].default is None
            else:
                assert params[key].default is value  # the dict's own object: written once
        assert {k for k in params if k not in ("scale", "seed")} <= set(defaults)


# --- docs/degradations.md ----------------------------------------------------------------------------------------


def table_after(text: str, marker: str) -> list[dict[str, str]]:
    """The rows (header -> cell, backticks kept) of the first markdown table after ``marker``."""
    lines = text[text.index(marker):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row, strict=True)) for row in body]


def number(text: str) -> float:
    return float(Fraction(text.strip()))  # "1/3" is the same float as the code's 1 / 3


def documented(key: str, cell: str) -> Any:
    """A defaults cell as a value: ``0.5``, ``[1/3, 1]``, or weights listed in the order of their names."""
    cell = cell.replace("`", "").strip()
    if key in WEIGHTS:
        return dict(zip(WEIGHTS[key], (number(x) for x in cell.split(",")), strict=True))
    if cell.startswith("["):
        return tuple(number(x) for x in cell.strip("[]").split(","))
    return number(cell)


def defaults_of(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The defaults column, split where it reads 'round 1 / round 2' (seed, an interpolation, left out)."""
    out: list[dict[str, Any]] = [{}, {}]
    for row in rows:
        key = row["key"].strip("`")
        if key == "seed":
            continue
        cells = row["default"].split(" / ")
        for i in range(2):
            out[i][key] = documented(key, cells[min(i, len(cells) - 1)])
        names = re.findall(r"`(\w+)`", row["range"])
        if key in WEIGHTS and names:
            assert tuple(names) == WEIGHTS[key]  # the order the defaults column lists the weights in
    return out


def test_docs_tables_state_the_code_defaults():
    text = DOCS.read_text()
    top = defaults_of(table_after(text, "### `realesrgan`"))[0]
    first, second = defaults_of(table_after(text, "Keys of `first` and `second`"))
    final = defaults_of(table_after(text, "Keys of `final`"))[0]
    simple = defaults_of(table_after(text, "### `bicubic_jpeg`"))[0]
    assert top == normal(HIGH_ORDER)
    assert first == normal(FIRST) and second == normal(SECOND)
    assert final == normal(FINAL)
    assert simple == normal(BICUBIC_JPEG)


def test_the_table_parser_reads_a_changed_default():
    rows = [{"key": "`sigma`", "range": "", "default": "[0.2, 3.0] / [0.2, 1.4]"},
            {"key": "`resize_modes`", "range": "", "default": "1, 1, 1, 0"}]
    first, second = defaults_of(rows)
    assert second["sigma"] != normal(SECOND["sigma"]) and first["sigma"] == normal(FIRST["sigma"])
    assert first["resize_modes"] == normal(FIRST["resize_modes"])


# --- one-way imports ---------------------------------------------------------------------------------------------

ORDER = ["options", "draws", "blur", "ops", "pipelines"]  # each module may import only those before it
OUTSIDE = {"rt4ksr.core.errors", "rt4ksr.data.degradation", "rt4ksr.data.jpeg"}


def test_modules_import_one_way_and_only_from_the_data_layer():
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted([*ORDER, "__init__"])
    for stem in ORDER:
        tree = ast.parse((PACKAGE / f"{stem}.py").read_text())
        top = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert node in top, f"{stem}.py imports inside a function (line {node.lineno})"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rt4ksr"):
                inner = node.module.removeprefix("rt4ksr.data.realworld.")
                if inner in ORDER:
                    assert ORDER.index(inner) < ORDER.index(stem), f"{stem}.py imports {inner}"
                else:
                    assert node.module in OUTSIDE, f"{stem}.py imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("rt4ksr") for a in node.names)
