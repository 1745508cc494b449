"""No service package imports another: services meet only on the bus (DESIGN.md).

    services/<a>/**   may import services.<a> and the shared packages
    shared packages   (condor: the HTCondor language; views: folds of the event stream;
                      cloudspec: what all know of the clouds) import each other and runtime
    services/runtime/ may import services.runtime only (the layer under everything)

Every file is read with `ast`, so an import inside a function counts, and so
does importlib.import_module("services.x") or __import__ with a literal name.
An import_module whose name is computed (an f-string, a variable) could reach
any service, so it counts too, except in the one launcher allowed below.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"

# `burst service NAME` runs services.NAME.__main__ and `burst bench negotiate` runs
# services.negotiator.bench in the CLI's own process. That is launching a service, not
# depending on it, so both go through this one function, and nothing else may.
LAUNCHERS = frozenset({("cli/launch.py", "launch")})


SHARED = ("condor", "views", "cloudspec")  # packages that are no service


def allowed(package: str) -> tuple[str, ...]:
    if package == "runtime":
        return ("runtime",)
    if package in SHARED:
        return (*SHARED, "runtime")
    return (package, *SHARED, "runtime")


@dataclass(frozen=True)
class Import:
    line: int
    module: str | None  # dotted name; None when computed at run time
    function: str  # the enclosing function's qualified name, "" at module level


class _Imports(ast.NodeVisitor):
    def __init__(self, package: str):
        self.package = package  # the dotted package relative imports start from
        self.scope: list[str] = []
        self.found: list[Import] = []

    def _add(self, node: ast.AST, module: str | None) -> None:
        self.found.append(Import(node.lineno, module, ".".join(self.scope)))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.module or "", node.level)
        if "." in base:
            self._add(node, base)
            return
        for alias in node.names:  # `from services import schedd` imports the package schedd
            self._add(node, f"{base}.{alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            self._add(node, self._literal_target(node.args[0]))
        self.generic_visit(node)

    def _absolute(self, module: str, level: int) -> str:
        if not level:
            return module
        parts = self.package.split(".")
        base = ".".join(parts[:len(parts) - (level - 1)])
        return f"{base}.{module}" if module else base

    def _literal_target(self, arg: ast.expr) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            dots = len(arg.value) - len(arg.value.lstrip("."))
            return self._absolute(arg.value[dots:], dots)
        if isinstance(arg, ast.JoinedStr) and arg.values:
            head = arg.values[0]
            prefix = head.value if isinstance(head, ast.Constant) else ""
            if prefix and not prefix.startswith("."):
                if not "services.".startswith(prefix) and not prefix.startswith("services."):
                    return prefix  # outside services (schemas.{name}, ...): not ours to judge
                if prefix.count(".") >= 2:  # f"services.condor.{x}": the package is known
                    return prefix.rstrip(".")
        return None


def imports(path: Path, module: str) -> list[Import]:
    """Every import in a file; `module` is its dotted name (services.a.b)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    visitor = _Imports(package)
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.found


def violations(services: Path) -> list[str]:
    """'file:line ...' for every import from one service package into another."""
    found = []
    for path in sorted(services.glob("*/**/*.py")):
        relative = path.relative_to(services)
        package = relative.parts[0]
        module = ".".join(("services", *relative.with_suffix("").parts))
        module = module.removesuffix(".__init__")
        for imp in imports(path, module):
            launcher = (relative.as_posix(), imp.function) in LAUNCHERS
            if imp.module is None:
                if not launcher:
                    found.append(f"{relative}:{imp.line}: import_module of a computed name "
                                 "(only the CLI's launcher may do that)")
                continue
            parts = imp.module.split(".")
            if parts[0] != "services" or len(parts) < 2 or parts[1] in allowed(package):
                continue
            if not launcher:
                found.append(f"{relative}:{imp.line}: imports {imp.module} ({package} may "
                             f"import only {', '.join(f'services.{p}' for p in allowed(package))})")
    return found


# --- the real tree ---------------------------------------------------------------------------


def test_no_service_imports_another():
    assert violations(SERVICES) == []


def test_the_check_reads_every_service_package_and_the_launcher_is_used():
    packages = {p.relative_to(SERVICES).parts[0] for p in SERVICES.glob("*/**/*.py")}
    assert {"cli", "condor", "runtime", "schedd", "glidein", "factory", "negotiator",
            "frontend"} <= packages
    (path, function), = LAUNCHERS
    launched = [imp for imp in imports(SERVICES / path, "services.cli.launch")
                if imp.function == function]
    assert launched and all(imp.module is None for imp in launched)  # the allowance is needed


# --- the checker, on planted trees -----------------------------------------------------------


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "services"
    for package in ("", "runtime", "condor", "a", "b", "cli"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    (root / "b" / "store.py").write_text("X = 1\n")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize("source", [
    "import services.b.store",
    "import services.b",
    "from services.b import store",
    "from services.b.store import X",
    "from services import b",
    "from services import runtime, b",
    "from ..b import store",
    "from .. import b",
    "def f():\n    from services.b.store import X\n",
    "class C:\n    def m(self):\n        import services.b\n",
    "import importlib\nimportlib.import_module('services.b.store')",
    "from importlib import import_module\ndef f():\n    return import_module('services.b')\n",
    "__import__('services.b.store')",
    "import importlib\nimportlib.import_module('..b.store', 'services.a')",
    "import importlib\ndef f(name):\n    return importlib.import_module(f'services.{name}.x')\n",
    "import importlib\ndef f(name):\n    return importlib.import_module(name)\n",
])
def test_planted_imports_of_another_service_are_caught(tmp_path, source):
    root = tree(tmp_path, {"a/mod.py": source})
    (found,) = violations(root)
    assert found.startswith("a/mod.py:")


@pytest.mark.parametrize(("name", "source"), [
    ("condor/x.py", "import services.b.store"),
    ("condor/x.py", "from services.a import mod"),
    ("runtime/x.py", "from services.condor import slot"),
    ("runtime/sub/x.py", "from ...b import store"),
    ("a/sub/deep.py", "from ...b.store import X"),
])
def test_the_shared_packages_import_no_service_and_runtime_not_condor(tmp_path, name, source):
    assert len(violations(tree(tmp_path, {name: source}))) == 1


@pytest.mark.parametrize("source", [
    "import services.runtime.bus\nfrom services.condor import slot",
    "from services import runtime, condor",
    "from . import other\nfrom .sub import x\nfrom ..a import mod",
    "import os, json\nfrom schemas import job",
    "import importlib\nimportlib.import_module('schemas.job')",
    "import importlib\nimportlib.import_module('services.a.other')",
    "import importlib\ndef f(n):\n    return importlib.import_module(f'schemas.{n}')\n",
    "import importlib\ndef f(n):\n    return importlib.import_module(f'services.condor.{n}')\n",
])
def test_imports_within_the_rules_pass(tmp_path, source):
    assert violations(tree(tmp_path, {"a/mod.py": source})) == []


def test_only_the_launcher_function_may_import_a_service_by_name(tmp_path):
    launcher = """
        import importlib
        def launch(service):
            return importlib.import_module(f"services.{service}.__main__")
        def other(service):
            return importlib.import_module(f"services.{service}.__main__")
    """
    root = tree(tmp_path, {"cli/launch.py": launcher, "cli/main.py": launcher.replace(
        "def other", "def unrelated")})
    found = violations(root)
    assert len(found) == 3 and not any(f.startswith("cli/launch.py:4:") for f in found)
