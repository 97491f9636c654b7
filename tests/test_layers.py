"""The layering rule: each layer of fvgen imports only the layers below it (and itself).

core -> priors -> render -> fit -> videomodel -> evaluation -> stages -> presets / pipeline -> cli.
A lower layer that imports a higher one (at module level or inside a function) fails this test.
"""

import ast
from pathlib import Path

import fvgen

PKG = Path(fvgen.__file__).resolve().parent
RANK = {"core": 0, "priors": 1, "render": 2, "fit": 3, "videomodel": 4, "evaluation": 5, "stages": 6,
        "presets": 7, "pipeline": 7, "cli": 8, "__main__": 9}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "fvgen" else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every fvgen import in ``path``."""
    mod = "fvgen." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        pkg = mod.rsplit(".", 1)[0] if mod.endswith(".__init__") else mod
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module or node.level == 0 else []
            names += [f"{target}.{a.name}" for a in node.names]  # `from . import fit` imports a module
            out += [(node.lineno, n) for n in names if n.startswith("fvgen.")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("fvgen.")]
    return out


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        own = layer_of("fvgen." + ".".join(path.relative_to(PKG).with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        for line, target in imports_of(path):
            other = layer_of(target)
            if other in RANK and RANK[other] > RANK[own]:
                bad.append(f"{path.relative_to(PKG)}:{line} ({own}) imports {target} ({other})")
    return bad


def test_every_module_belongs_to_a_layer():
    loose = [p.name for p in PKG.glob("*.py") if p.stem not in RANK and p.stem != "__init__"]
    dirs = [p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("__") and p.name not in RANK]
    assert not loose and not dirs, f"modules outside the layers: {loose + dirs}"


def test_layers_import_only_downward():
    assert violations() == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule is enforceable: an upward import in a core module is reported."""
    import fvgen.core

    bad = PKG / "core" / "_layer_probe.py"
    bad.write_text("def f():\n    from ..pipeline import reconstruct\n")
    try:
        assert any("_layer_probe.py:2 (core) imports fvgen.pipeline" in v for v in violations())
    finally:
        bad.unlink()
    assert fvgen.core
