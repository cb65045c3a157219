"""The architecture the folders show is the one the imports follow: layers, no cycles, imports at module top,
modules and functions of a readable size; the 0.1 module paths the README documented still import."""

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dept_vl"
BASE = {"_version", "errors", "_dataclass", "_registry", "io", "_moved", "progress"}
# what each part may import besides BASE (and itself)
LOWER = {"methods", "models", "data", "fast"}
LAYERS = {
    "methods": set(),
    "models": {"methods"},
    "data": set(),
    "fast": set(),
    "runs": LOWER,
    "inference": LOWER | {"runs"},
    "training": LOWER | {"runs", "inference"},
    "serve": LOWER | {"runs", "inference"},
    "integrations": LOWER | {"runs", "inference", "training"},  # other tools' plugins (lmms-eval): below serve/
    "bench": LOWER | {"runs", "inference", "training", "serve", "peft"},
    "peft": {"methods", "models"},
}
OPTIONAL = {("dept_vl.cli.commands", "dept_vl.serve.server")}  # the serve extra, imported when `serve` runs


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(module: str) -> list[tuple[str, bool]]:
    """(imported dept_vl module, imported at module top) for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "dept_vl" or name.startswith("dept_vl."):
                while name not in MODULES:
                    name = name.rsplit(".", 1)[0]
                found.append((name, id(node) in top))
    return found


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_no_module_imports_the_package_root_or_imports_inside_functions():
    bad = [(m, t) for m in MODULES if m != "dept_vl" for t, at_top in imports(m)
           if t == "dept_vl" or (not at_top and (m, t) not in OPTIONAL)]
    assert bad == []


def test_layers():
    wrong = []
    for module in MODULES:
        layer = part(module)
        if layer not in LAYERS:
            continue
        allowed = LAYERS[layer] | BASE | {layer}
        wrong += [(module, target) for target, _ in imports(module) if part(target) not in allowed]
    assert wrong == []
    assert all(part(t) in BASE for m in MODULES if part(m) in BASE for t, _ in imports(m))


def test_only_the_lmms_eval_plugin_imports_lmms_eval():
    """lmms-eval (the optional extra) is imported by the plugin's modules alone, which no other module imports:
    ``import dept_vl`` (and the CLI) never imports it."""
    importers = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(name.split(".")[0] == "lmms_eval" for name in names):
                importers.add(module)
    assert importers == {"dept_vl.integrations.lmms_model", "dept_vl.integrations.lmms_plugin"}
    assert [(m, t) for m in MODULES for t, _ in imports(m) if t in importers and m not in importers] == []


def with_packages(target: str, importer: str) -> list[str]:
    """``target`` and the packages importing it runs first (``a.b`` for ``a.b.c``; not the root, not one that
    holds ``importer``, which is loading already)."""
    parts = target.split(".")
    packages = [".".join(parts[:i]) for i in range(2, len(parts))]
    return [target] + [p for p in packages if importer != p and not importer.startswith(p + ".")]


def test_no_import_cycles():
    graph = {m: {p for t, _ in imports(m) for p in with_packages(t, m)} for m in MODULES}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in graph[node]:
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


FIRST_IMPORT = """
import importlib, json, sys
failures = []
for module in json.loads(sys.argv[1]):
    for name in [n for n in sys.modules if n == "dept_vl" or n.startswith("dept_vl.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception as err:
        failures.append(f"{module}: {type(err).__name__}: {err}")
print(json.dumps(failures))
"""


def missing_extras(module: str) -> set[str]:
    """The third-party packages ``module`` imports at its top that are not installed (an optional extra)."""
    tree = ast.parse(MODULES[module].read_text())
    names = [a.name for node in tree.body if isinstance(node, ast.Import) for a in node.names]
    names += [node.module for node in tree.body if isinstance(node, ast.ImportFrom) and not node.level and node.module]
    return {top for top in {n.split(".")[0] for n in names} - {"dept_vl", "__future__"}
            if importlib.util.find_spec(top) is None}


def importable_here() -> list[str]:
    """Every module but ``__main__`` ones and those needing (directly or through dept_vl imports) a missing extra."""
    graph = {m: {t for t, at_top in imports(m) if at_top} for m in MODULES}
    lacking = {m for m in MODULES if missing_extras(m)}
    while grown := {m for m in MODULES if graph[m] & lacking} - lacking:
        lacking |= grown
    return sorted(m for m in MODULES if m not in lacking and not m.endswith("__main__"))


def test_every_module_imports_when_it_is_the_first_dept_vl_module():
    """Cycles through a package's ``__init__`` (importing ``a.b.c`` runs ``a.b`` first) show only when the module
    is imported in a process where no dept_vl module is loaded yet: each is, in one subprocess (third-party modules
    stay loaded between them, so it stays fast)."""
    modules = importable_here()
    assert "dept_vl.data.sources" in modules and "dept_vl.cli" in modules and len(modules) > 100
    done = subprocess.run([sys.executable, "-c", FIRST_IMPORT, json.dumps(modules)], cwd=PACKAGE.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    failures = json.loads(done.stdout.splitlines()[-1])
    assert failures == [], "\n".join(failures)  # every module that fails, each with its error


def test_modules_and_functions_stay_readable():
    long_files = [m for m, p in MODULES.items() if len(p.read_text().splitlines()) > 400]
    long_functions = [f"{m}.{node.name}" for m, p in MODULES.items() for node in ast.walk(ast.parse(p.read_text()))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > 60]
    assert long_files == [] and long_functions == []


@pytest.mark.parametrize("old,new", [("dept_vl.tasks", "dept_vl.data.tasks"), ("dept_vl.metrics", "dept_vl.data.metrics"),
                                     ("dept_vl.feature_cache", "dept_vl.data.feature_cache"),
                                     ("dept_vl.train", "dept_vl.training.loop"),
                                     ("dept_vl.train_config", "dept_vl.runs.recipe"),
                                     ("dept_vl.method", "dept_vl.methods"),
                                     ("dept_vl.models.methods", "dept_vl.methods.registry"),
                                     ("dept_vl.training.recipe", "dept_vl.runs.recipe"),
                                     ("dept_vl.training.predict", "dept_vl.inference.predict"),
                                     ("dept_vl.tasks.base", "dept_vl.data.tasks.base")])
def test_the_readme_0_1_module_paths_still_import(old, new, monkeypatch):
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        moved = importlib.import_module(old)
    assert moved is importlib.import_module(new)  # the same module object: nothing is loaded twice
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module(old)  # said once per process
