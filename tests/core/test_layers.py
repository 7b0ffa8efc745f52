"""Import direction of the package: every ``itemrep`` import must point down the layers.

Layers, top to bottom (a module may import its own layer and the layers its row lists)::

    cli             itemrep.cli, itemrep.index_cli, itemrep.review_cli  -> anything
    report          itemrep.report.*                             -> dedup pipeline and stages, concepts, encoders, infrastructure
    dedup-pipeline  itemrep.dedup.pipeline, itemrep.dedup.index,
                    itemrep.dedup.explain                        -> dedup stages, concepts, encoders, infrastructure
    dedup-stages    the rest of itemrep.dedup                    -> concepts, encoders, infrastructure
    recsys          itemrep.recsys.*                             -> concepts, encoders, infrastructure
    concepts        itemrep.concepts.*                           -> infrastructure      (not encoders)
    encoders        itemrep.encoders.*                           -> infrastructure      (not concepts)
    infrastructure  itemrep (the package), catalog, errors, images, cache, runinfo, paths, fetch -> infrastructure

So: concepts and encoders are siblings (neither imports the other) and never import
``itemrep.dedup``; nothing but the CLI modules imports ``itemrep.cli``; nothing but the CLI imports
``itemrep.report`` (it reads what dedup wrote); nothing in dedup, concepts,
encoders or infrastructure imports ``itemrep.recsys``. (``itemrep.recsys.cli`` is recsys's own
command group and stays in the recsys layer.)

Every module under ``src/itemrep`` is parsed with :mod:`ast` (no import side effects). Counted:
``import x`` and ``from x import y`` anywhere in the file (module level, inside functions and
classes, under ``if TYPE_CHECKING:``), relative imports, and ``importlib.import_module("itemrep...")``
/ ``importlib.util.find_spec("itemrep...")`` / ``__import__("itemrep...")`` with a literal name.
A module that belongs to no layer fails :func:`test_every_module_has_a_layer`, so a new module
has to be placed here on purpose.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "itemrep"

INFRASTRUCTURE = frozenset({
    "itemrep", "itemrep.catalog", "itemrep.errors", "itemrep.images", "itemrep.cache", "itemrep.runinfo", "itemrep.paths", "itemrep.fetch",
})  # fmt: skip
#: ``itemrep.dedup.explain`` re-creates a FITRep from a dedup run's ``run.json``, so it sits with the pipeline.
PIPELINE = frozenset({"itemrep.dedup.pipeline", "itemrep.dedup.index", "itemrep.dedup.explain"})
#: The command line: ``itemrep.cli`` and the command groups it mounts (which share its options).
CLI = frozenset({"itemrep.cli", "itemrep.index_cli", "itemrep.review_cli"})

#: layer -> the layers its modules may import (its own layer is always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "cli": frozenset({"cli", "report", "dedup-pipeline", "dedup-stages", "recsys", "concepts", "encoders", "infrastructure"}),
    "report": frozenset({"report", "dedup-pipeline", "dedup-stages", "concepts", "encoders", "infrastructure"}),
    "dedup-pipeline": frozenset({"dedup-pipeline", "dedup-stages", "concepts", "encoders", "infrastructure"}),
    "dedup-stages": frozenset({"dedup-stages", "concepts", "encoders", "infrastructure"}),
    "recsys": frozenset({"recsys", "concepts", "encoders", "infrastructure"}),
    "concepts": frozenset({"concepts", "infrastructure"}),
    "encoders": frozenset({"encoders", "infrastructure"}),
    "infrastructure": frozenset({"infrastructure"}),
}

_DYNAMIC_IMPORTERS = frozenset({"import_module", "find_spec", "__import__"})


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or ``None`` when it belongs to none."""
    if module in INFRASTRUCTURE:
        return "infrastructure"
    if module in CLI:
        return "cli"
    if module in PIPELINE or any(module.startswith(p + ".") for p in PIPELINE):
        return "dedup-pipeline"
    for pkg, layer in (("itemrep.report", "report"), ("itemrep.dedup", "dedup-stages"), ("itemrep.concepts", "concepts"),
                       ("itemrep.encoders", "encoders"), ("itemrep.recsys", "recsys")):  # fmt: skip
        if module == pkg or module.startswith(pkg + "."):
            return layer
    return None


@dataclass(frozen=True)
class Import:
    """One import of an ``itemrep`` module found in a source file."""

    source: str  # importing module
    target: str  # imported module (``from a import b`` resolves to ``a.b`` when that is a module)
    path: Path
    line: int

    def __str__(self) -> str:
        return (f"{self.path.relative_to(SRC.parent)}:{self.line}: {self.source} ({layer_of(self.source)}) "
                f"imports {self.target} ({layer_of(self.target)})")  # fmt: skip


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root/itemrep``."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def collect_imports(source: str, module: str, path: Path, known: set[str], is_package: bool = False) -> list[Import]:
    """Every import of an ``itemrep`` module in ``source`` (the text of ``module`` at ``path``).

    Args:
        source: Python source text.
        module: dotted name of the module the text belongs to (for relative imports).
        path: its file (only for messages).
        known: dotted names of all modules of the package (``from a import b`` -> ``a.b`` when known).
        is_package: ``module`` is a package ``__init__`` (a relative import then starts at itself).

    Returns:
        One :class:`Import` per imported ``itemrep`` name, in source order.
    """
    package = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []

    def add(target: str, node: ast.AST) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            out.append(Import(module, target, path, getattr(node, "lineno", 0)))

    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                add(sub if sub in known else mod, node)
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            arg = node.args[0]
            if name in _DYNAMIC_IMPORTERS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value, node)
    return sorted(set(out), key=lambda i: (i.line, i.target))


def package_imports(root: Path = SRC) -> list[Import]:
    mods = all_modules(root)
    known = set(mods)
    out: list[Import] = []
    for name, path in mods.items():
        out += collect_imports(path.read_text(encoding="utf-8"), name, path, known, is_package=path.name == "__init__.py")
    return out


IMPORTS = package_imports()


def violations(layer: str) -> list[str]:
    allowed = ALLOWED[layer]
    return [str(i) for i in IMPORTS if layer_of(i.source) == layer and layer_of(i.target) not in allowed]


# ------------------------------------------------------------------------------------------ tests
def test_every_module_has_a_layer():
    unplaced = [m for m in all_modules() if layer_of(m) is None]
    assert not unplaced, f"modules in no layer (add them to tests/core/test_layers.py): {unplaced}"


def test_imports_resolve_to_existing_modules():
    """A typo'd or stale ``itemrep`` import would otherwise slip past the layer check."""
    known = set(all_modules())
    missing = [str(i) for i in IMPORTS if i.target not in known]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_layer_imports_point_down(layer):
    bad = violations(layer)
    assert not bad, f"{layer} may import only {sorted(ALLOWED[layer])}:\n" + "\n".join(bad)


def test_concepts_and_encoders_are_siblings():
    """Spelled out because it is the rule most likely to be broken by a convenient import."""
    bad = [str(i) for i in IMPORTS if {layer_of(i.source), layer_of(i.target)} == {"concepts", "encoders"}]
    assert not bad, "\n".join(bad)


def test_nothing_below_the_cli_imports_it():
    bad = [str(i) for i in IMPORTS if layer_of(i.target) == "cli" and layer_of(i.source) != "cli"]
    assert not bad, "\n".join(bad)


def test_collector_sees_every_import_form(tmp_path):
    """The checker itself: module- and function-level, relative, ``from pkg import module``, dynamic."""
    src = (
        "import itemrep.errors\n"
        "from itemrep import catalog, __version__\n"
        "from . import schema\n"
        "from ..encoders.image import embed_images\n"
        "def f():\n"
        "    from itemrep.dedup.images import encode_catalog_images\n"
        "    import importlib, importlib.util\n"
        "    importlib.util.find_spec('itemrep.cli')\n"
        "    return importlib.import_module('itemrep.recsys.data')\n"
        "class C:\n"
        "    import numpy\n"
    )
    known = {"itemrep", "itemrep.errors", "itemrep.catalog", "itemrep.concepts.schema", "itemrep.encoders.image",
             "itemrep.dedup.images", "itemrep.cli", "itemrep.recsys.data"}  # fmt: skip
    got = [(i.target, i.line) for i in collect_imports(src, "itemrep.concepts.x", tmp_path / "x.py", known)]
    assert got == [
        ("itemrep.errors", 1), ("itemrep", 2), ("itemrep.catalog", 2), ("itemrep.concepts.schema", 3),
        ("itemrep.encoders.image", 4), ("itemrep.dedup.images", 6), ("itemrep.cli", 8), ("itemrep.recsys.data", 9),
    ]  # fmt: skip
    # a package __init__ resolves ``from . import x`` against itself
    got = collect_imports("from . import schema\n", "itemrep.concepts", tmp_path / "__init__.py", known, is_package=True)
    assert [i.target for i in got] == ["itemrep.concepts.schema"]
    assert layer_of("itemrep.dedup.pipeline") == "dedup-pipeline" and layer_of("itemrep.dedup.images") == "dedup-stages"
    assert layer_of("itemrep.paths") == "infrastructure" and layer_of("itemrep.somethingnew") is None
