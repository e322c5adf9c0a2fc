"""Every third-party module the package imports is a declared dependency of a plain install
(``pip install -e .``, the README's first command), not one that arrives only with the test extras
or by chance through another package."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> dict[str, str]:
    """{top-level module: a file importing it} over src/, the standard library and the project's own left out."""
    found = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("atft_kedro", "atft_kernels"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalised(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in project["dependencies"]}
    distributions = packages_distributions()
    imported = _imported_modules()
    assert {"torch", "polars", "kedro", "scipy"} <= set(imported)  # the scan sees the package's imports
    missing = {module: where for module, where in imported.items()
               if not {_normalised(d) for d in distributions.get(module, [module])} & declared}  # fmt: skip
    assert not missing, f"imported but not in pyproject.toml's [project].dependencies: {missing}"
