"""What each DVC stage runs: the project files its module imports, transitively, and the package data
those modules read. `python -m tests.dvc_deps` prints the deps lists dvc.yaml should have."""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"compclip": REPO / "src", "stages": REPO}  # top-level package -> the folder it lives in
DATA_REF = re.compile(r'Path\(__file__\)\.parent((?:\s*/\s*"[^"]+")+)')


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a package's __init__.py), or None if not ours."""
    top = name.split(".")[0]
    if top not in ROOTS:
        return None
    base = ROOTS[top].joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package(path: Path) -> str:
    rel = path.relative_to(ROOTS["compclip"] if path.is_relative_to(ROOTS["compclip"] / "compclip") else REPO)
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts[:-1])


@lru_cache(maxsize=None)
def direct_imports(path: Path) -> frozenset[str]:
    """Every module this file imports, at any depth of the file (function-level imports run too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package(path).split(".")
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return frozenset(found)


def closure(module: str) -> set[Path]:
    """The project files that running `python -m module` executes: the module, what it imports, and the
    packages' __init__.py files on the way (empty ones run nothing and are left out)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            f = module_file(".".join(parts[:i]))
            if f is not None and f not in seen:
                seen.add(f)
                todo.extend(direct_imports(f))
    return {f for f in seen if not (f.name == "__init__.py" and not f.read_text().strip())}


def data_files(files: set[Path]) -> set[Path]:
    """Package data the modules read: `Path(__file__).parent / "dir" / "file"` references."""
    out = set()
    for f in files:
        for m in DATA_REF.finditer(f.read_text()):
            out.add(f.parent.joinpath(*re.findall(r'"([^"]+)"', m.group(1))))
    return out


def code_deps(module: str) -> list[str]:
    files = closure(module)
    return sorted(p.relative_to(REPO).as_posix() for p in files | data_files(files))


def stage_module(cmd: str) -> str:
    m = re.match(r"python -m (stages\.\w+)", cmd)
    if not m:
        raise ValueError(f"stage command {cmd!r} is not `python -m stages.<name> ...`")
    return m.group(1)


if __name__ == "__main__":
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        print(f"{name}:")
        for dep in code_deps(stage_module(cmd)):
            print(f"  - {dep}")
    sys.exit(0)
