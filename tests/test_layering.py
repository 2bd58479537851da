"""The floor plan of DESIGN.md §2, held: imports point one way, no file cycles, lazy imports say why.

Every module's imports are read with `ast`, including those inside functions and under
`if TYPE_CHECKING:` (a dependency there is still a dependency). Each file belongs to the unit
(a package folder or a top-level module) that LAYERS lists it under; a file no unit lists fails
the test, so a new package or module must be placed in the table before it can be imported.

A file may import its own unit, and any unit of a lower layer (a larger number). Never a unit of a
higher layer, and never a sibling unit of its own layer, except in the base layer, whose modules
may use each other. Separately, no set of files may import each other in a cycle, however deep in
a function the import sits. An import inside a function is only for deferring a heavy optional
dependency, and its line (or the line above) names it.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("worldplay", "kernels")     # the folders the floor plan covers

# Top to bottom: a unit ending in "/" is a package folder, anything else one file.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("worldplay/__main__.py",),                                                       # 0 python -m worldplay
    ("worldplay/cli.py", "worldplay/commands/"),                                      # 1 the command line
    ("worldplay/client/", "worldplay/eval/", "worldplay/train/"),                     # 2 applications
    ("worldplay/sources/",),                                                          # 3 frame sources
    ("worldplay/stream/", "worldplay/checkpoints.py"),                                # 4 streaming, weights
    ("worldplay/model/", "worldplay/memory/", "worldplay/world/"),                    # 5 the parts
    ("worldplay/__init__.py", "worldplay/camera.py", "worldplay/controls.py",         # 6 the base
     "worldplay/config.py", "worldplay/frame.py", "worldplay/vocab.py", "worldplay/fileio.py",
     "worldplay/session_file.py", "worldplay/errors.py", "worldplay/png.py", "worldplay/devices.py",
     "worldplay/timing.py", "worldplay/procstats.py"),
    ("kernels/",),                                                                     # 7 kernels
)
BASE = 6                     # the layer whose units may import each other (without cycles)
# What an import inside a function may defer; its comment names one of these.
HEAVY = ("pygame", "pyav", "triton", "matplotlib", "torch", "huggingface_hub", "pytorch_msssim",
         "stlpips")


@dataclass(frozen=True)
class Import:
    src: str         # importing file, relative to the root ("worldplay/model/dit.py")
    dst: str         # imported file
    line: int
    lazy: bool       # inside a function
    comment: str     # comments beside the import and above its block of imports, lower case


def module_files(root: Path) -> dict[str, str]:
    """Dotted module name -> file path relative to root, for every module of PACKAGES."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            rel = p.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = rel.as_posix()
    return out


def _target(name: str, modules: dict[str, str]) -> str | None:
    """The file an absolute dotted name imports: the longest prefix that is a module of ours."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        hit = modules.get(".".join(parts[:n]))
        if hit is not None:
            return hit
    return None


def file_imports(root: Path, path: str, modules: dict[str, str]) -> list[Import]:
    """Imports of our own modules in one file, module level and inside functions alike."""
    text = (root / path).read_text()
    lines = text.splitlines()
    package = path.rsplit("/", 1)[0].replace("/", ".")
    found: list[Import] = []

    def add(node: ast.stmt, names: list[str], lazy: bool, block_start: int) -> None:
        # the reason may stand beside the import, or once above a block of consecutive imports
        span = lines[max(block_start - 2, 0):node.end_lineno]
        comment = " ".join(line.split("#", 1)[1] for line in span if "#" in line).lower()
        for dst in dict.fromkeys(_target(name, modules) or name.split(".")[0] for name in names):
            ours = dst.endswith(".py")
            if (ours and dst != path) or (not ours and lazy):   # third-party: only lazy ones matter
                found.append(Import(path, dst, node.lineno, lazy, comment))

    def walk(node: ast.AST, lazy: bool) -> None:
        block_start, previous_end = 0, -1
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if child.lineno != previous_end + 1:
                    block_start = child.lineno
                previous_end = child.end_lineno
            if isinstance(child, ast.Import):
                add(child, [a.name for a in child.names], lazy, block_start)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:             # relative: from the file's package, up level - 1
                    up = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                add(child, [f"{base}.{a.name}" for a in child.names], lazy, block_start)
            walk(child, inner)

    walk(ast.parse(text, filename=path), False)
    return found


def all_imports(root: Path) -> tuple[list[str], list[Import]]:
    modules = module_files(root)
    files = sorted(set(modules.values()))
    return files, [imp for f in files for imp in file_imports(root, f, modules)]


def unit_of(path: str) -> tuple[int, str] | None:
    """(layer number, unit) of a file, or None when the table does not list it."""
    for layer, units in enumerate(LAYERS):
        for unit in units:
            if path == unit or (unit.endswith("/") and path.startswith(unit)):
                return layer, unit
    return None


def unlisted(files: list[str]) -> list[str]:
    return [f"{f}: not in the layer table (tests/test_layering.py LAYERS)" for f in files if unit_of(f) is None]


def layer_violations(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        a, b = unit_of(imp.src), unit_of(imp.dst)
        if a is None or b is None or a[1] == b[1] or b[0] > a[0] or (a[0] == b[0] == BASE):
            continue
        how = "upward" if b[0] < a[0] else "sideways"
        out.append(f"{imp.src}:{imp.line}: imports {imp.dst} {how} "
                   f"(layer {a[0]} {a[1]} -> layer {b[0]} {b[1]})")
    return out


def cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one file (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.dst.endswith(".py"):
            graph.setdefault(imp.src, set()).add(imp.dst)
            graph.setdefault(imp.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def unexplained_lazy(imports: list[Import]) -> list[str]:
    return [f"{imp.src}:{imp.line}: imports {imp.dst} inside a function without naming the heavy "
            f"dependency it defers ({', '.join(HEAVY)})"
            for imp in imports if imp.lazy and not any(h in imp.comment for h in HEAVY)]


def problems(root: Path) -> list[str]:
    files, imports = all_imports(root)
    return (unlisted(files) + layer_violations(imports) + unexplained_lazy(imports)
            + [f"import cycle: {' -> '.join(g)}" for g in cycles(imports)])


# ---- the floor plan itself -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree() -> tuple[list[str], list[Import]]:
    return all_imports(ROOT)


def test_every_module_has_a_layer(tree):
    assert unlisted(tree[0]) == []


def test_imports_point_down_only(tree):
    assert layer_violations(tree[1]) == []


def test_no_import_cycles_between_files(tree):
    assert cycles(tree[1]) == []


def test_imports_inside_functions_name_what_they_defer(tree):
    assert unexplained_lazy(tree[1]) == []


def test_kernels_import_nothing_of_worldplay(tree):
    assert [i for i in tree[1] if i.src.startswith("kernels/") and i.dst.startswith("worldplay/")] == []


# ---- the test of the test ------------------------------------------------------------------------

def _copy_tree(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_checker_reports_a_forbidden_import(tmp_path):
    root = _copy_tree(tmp_path)
    rope = root / "worldplay/model/rope.py"
    rope.write_text(rope.read_text() + "\n\ndef _late():\n    from worldplay.stream import sampler  # torch\n")
    memory = root / "worldplay/memory/memory.py"
    memory.write_text(memory.read_text() + "\nfrom worldplay.world import scene\n")
    found = problems(root)
    assert any("worldplay/model/rope.py" in p and "upward" in p and "worldplay/stream/sampler.py" in p
               for p in found), found
    assert any("worldplay/memory/memory.py" in p and "sideways" in p for p in found), found


def test_checker_reports_cycles_unlisted_modules_and_unexplained_lazy_imports(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "worldplay/world/aa.py").write_text("from worldplay.world import bb\n")
    (root / "worldplay/world/bb.py").write_text("def f():\n    from worldplay.world import aa\n")
    (root / "worldplay/newthing.py").write_text("X = 1\n")
    found = problems(root)
    assert "import cycle: worldplay/world/aa.py -> worldplay/world/bb.py" in found, found
    assert any(p.startswith("worldplay/newthing.py: not in the layer table") for p in found), found
    assert any(p.startswith("worldplay/world/bb.py:2: imports worldplay/world/aa.py inside a function")
               for p in found), found


def test_checker_rules_on_a_synthetic_graph():
    def imp(src, dst, lazy=False, comment=""):
        return Import(src, dst, 1, lazy, comment)

    ok = [imp("worldplay/cli.py", "worldplay/errors.py"),                   # down
          imp("worldplay/camera.py", "worldplay/config.py"),                # base siblings
          imp("worldplay/model/dit.py", "kernels/dispatch.py"),             # down to kernels
          imp("worldplay/client/app.py", "worldplay/client/hud.py"),        # own unit
          imp("worldplay/client/recorder.py", "av", lazy=True, comment="import av  # pyav: slow")]
    bad = [imp("worldplay/model/dit.py", "worldplay/stream/kv_cache.py"),   # up
           imp("worldplay/eval/x.py", "worldplay/train/y.py"),              # sideways
           imp("kernels/jit.py", "worldplay/errors.py")]                    # kernels -> worldplay
    assert layer_violations(ok) == [] and unexplained_lazy(ok) == []
    assert len(layer_violations(bad)) == 3
    assert unexplained_lazy([imp("worldplay/eval/x.py", "tqdm", lazy=True, comment="import tqdm")])
    assert cycles([imp("a.py", "b.py"), imp("b.py", "c.py"), imp("c.py", "a.py")]) == [["a.py", "b.py", "c.py"]]
    assert cycles([imp("a.py", "b.py"), imp("b.py", "c.py")]) == []
