"""Every ``fvgen`` name a benchmark script imports exists.

The scripts import inside their functions (so that ``--help`` stays fast), which no other test
reaches: a module moved in a refactor would only show as an ImportError on the GPU host.
"""

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def fvgen_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every ``from fvgen... import name`` and (module, None) for ``import fvgen...``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fvgen":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "fvgen"]
    return found


def test_the_scan_sees_nested_imports(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from fvgen.core import nothing_here\n    import fvgen.core.images\n")
    assert fvgen_imports(script) == [("fvgen.core", "nothing_here"), ("fvgen.core.images", None)]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_resolve(path):
    missing = []
    for module, name in fvgen_imports(path):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{path.name} imports names that do not exist: {missing}"
