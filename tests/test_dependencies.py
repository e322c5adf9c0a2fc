"""Every third-party module the package imports is a declared dependency of a plain install
(``pip install -e .``, the README's first command), not one that arrives only with the test extras
or by chance through another package; and what the tests and the research scripts import, of that
install with the test extras (the README's second command)."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    return {_normalised(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}


def _undeclared(imported: dict[str, str], declared: set[str]) -> dict[str, str]:
    distributions = packages_distributions()
    return {module: where for module, where in imported.items() if not {_normalised(d) for d in distributions.get(module, [module])} & declared}


def _imported_modules(*folders: str) -> dict[str, str]:
    """{top-level module: a file importing it} over ``folders``, the standard library and the
    project's own (its packages, the tests, the scripts beside them) left out."""
    files = sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))
    own = {"atft_kedro", "atft_kernels", "tests", *(path.stem for path in files)}
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_declared_dependency():
    imported = _imported_modules("src")
    assert {"torch", "polars", "kedro", "scipy"} <= set(imported)  # the scan sees the package's imports
    missing = _undeclared(imported, _declared())
    assert not missing, f"imported but not in pyproject.toml's [project].dependencies: {missing}"


def test_what_the_tests_and_research_scripts_import_comes_with_the_test_extras():
    imported = _imported_modules("tests", "experiments")
    assert {"pytest", "torch_geometric"} <= set(imported)
    missing = _undeclared(imported, _declared("test"))
    assert not missing, f"imported but neither a dependency nor in the test extras: {missing}"
