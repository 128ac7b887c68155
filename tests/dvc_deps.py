"""What each DVC stage runs: the project files its module imports, transitively, and the package data
those modules read. `python -m tests.dvc_deps` prints the code deps dvc.yaml should have; `--write`
puts them into dvc.yaml."""

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


def rewrite_code_deps(dvc_yaml: Path) -> None:
    """Replace the literal (code) deps of every stage in dvc.yaml by code_deps(); templated (data) deps,
    comments and everything else stay as they are."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    wanted = {name: code_deps(stage_module(st.get("do", st)["cmd"])) for name, st in stages.items()}
    out, stage, in_deps = [], None, False
    for line in dvc_yaml.read_text().split("\n"):
        if m := re.match(r"^  (\w+):", line):
            stage = m.group(1)
        if re.match(r"^\s+deps:\s*$", line):
            pad = " " * (len(line) - len(line.lstrip()) + 2)
            out += [line, *(f"{pad}- {d}" for d in wanted[stage])]
            in_deps = True
            continue
        if in_deps and line.strip().startswith("- "):
            if "${" in line:
                out.append(line)
            continue
        in_deps = False
        out.append(line)
    dvc_yaml.write_text("\n".join(out))


if __name__ == "__main__":
    import yaml

    if sys.argv[1:] == ["--write"]:
        rewrite_code_deps(REPO / "dvc.yaml")
        sys.exit(0)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        print(f"{name}:")
        for dep in code_deps(stage_module(stage.get("do", stage)["cmd"])):
            print(f"  - {dep}")
