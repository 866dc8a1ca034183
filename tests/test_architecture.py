"""The house rules, checked on the source: imports run one way, no circles, no other library's privates.

Stage order (issue 24): cli -> pipelines -> serving -> training -> features -> rebuy (core). A module may
import its own stage or a lower one, never a higher one, and no set of modules may import each other in a
circle. Every import statement counts, function-level ones too (they still tie the modules together);
only `if TYPE_CHECKING:` blocks are left out, because they never run.

Each rule carries an explicit list of the violations known today, with the issue that removes each. The
test fails on a violation not in its list AND on a listed one that no longer exists: the lists can only
shrink (delete the entry in the commit that removes the violation).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("rebuy", "features", "training", "serving", "pipelines", "cli")  # lowest first

# Circles known today -> the issue that removes each.
KNOWN_CIRCLES: dict[frozenset[str], str] = {
    # features/online_store.py opens features/redis_store.py inside open_rows, which imports the
    # interface from online_store (shared infrastructure, #20)
    frozenset({"features.online_store", "features.redis_store"}): "#20",
}
# Imports against the stage order known today: (importing module, imported module) -> issue.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

# Another library's private names used on purpose, each pinned by a version check: (module, name) ->
# the library whose version the module pins in its PINNED_VERSIONS (checked below against the installed one).
PINNED_PRIVATE: dict[tuple[str, str], str] = {
    # LightGBM's prebuilt single-row predictor through its C API (serving/fastpredict.py's docstring says
    # why and what it measured); PINNED_VERSIONS there names the version it was checked on.
    ("serving.fastpredict", "_LIB"): "lightgbm",
    ("serving.fastpredict", "_safe_call"): "lightgbm",
    ("serving.fastpredict", "_handle"): "lightgbm",
}
# Other private uses known today (not pinned): (module, name) -> issue.
KNOWN_PRIVATE: dict[tuple[str, str], str] = {}

# Underscore names that are documented public API of the standard library, not private members.
PUBLIC_UNDERSCORE = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_missing_"})


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module


def _modules() -> list[Module]:
    out = []
    for stage in STAGES:
        for path in sorted((ROOT / stage).rglob("*.py")):
            if "feature_repo/data" in path.as_posix():
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(Module(".".join(parts), path, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (annotation-only imports never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(mod: Module, known: set[str]) -> set[str]:
    """The project modules `mod` imports (a `from pkg import name` naming a module counts as that module)."""
    is_pkg = mod.path.name == "__init__.py"
    out: set[str] = set()
    for node in _runtime_nodes(mod.tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.name.split(".")[: None if is_pkg else -1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for a in node.names:
                full = f"{source}.{a.name}"
                out.add(full if full in known else source)
    return {m for m in out if m.split(".")[0] in STAGES and m != mod.name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = {m.name for m in mods}
    return {m.name: _imports(m, known) & known for m in mods}


def _circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.add(frozenset(comp))
    return found


def _private_uses() -> set[tuple[str, str]]:
    """(module, name) for every private name of another library the packages touch.

    A name counts as ours when it is defined anywhere in the packages (def, class, assignment, attribute
    store, argument, import alias); `x._name` or `from lib import _name` with a name that is not ours is
    another library's private member -- also when reached through `self` in a subclass of that library.
    """
    mods = _modules()
    ours: set[str] = set()
    for m in mods:
        for n in ast.walk(m.tree):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                ours.add(n.name)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                ours.add(n.id)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                ours.add(n.attr)
            elif isinstance(n, ast.arg):
                ours.add(n.arg)
            elif isinstance(n, ast.Import | ast.ImportFrom):
                ours.update(a.asname for a in n.names if a.asname)

    def private(name: str) -> bool:
        dunder = name.startswith("__") and name.endswith("__")
        return name.startswith("_") and not dunder and name not in PUBLIC_UNDERSCORE

    out: set[tuple[str, str]] = set()
    for m in mods:
        for n in ast.walk(m.tree):
            if isinstance(n, ast.Attribute) and private(n.attr) and n.attr not in ours:
                out.add((m.name, n.attr))
            elif (
                isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").split(".")[0] not in STAGES
            ):
                out.update((m.name, a.name) for a in n.names if private(a.name))
    return out


def test_the_scanner_sees_function_level_imports_and_skips_type_checking_blocks() -> None:
    src = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from serving.scorer import Scorer\n"
        "def f():\n    from pipelines import loop\n    import training.offer\n"
    )
    mod = Module("features.x", Path("features/x.py"), ast.parse(src))
    assert _imports(mod, {"pipelines.loop", "training.offer", "serving.scorer"}) == {
        "pipelines.loop",
        "training.offer",
    }
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset({"a", "b", "c"})}


def test_imports_follow_the_stage_order() -> None:
    rank = {s: i for i, s in enumerate(STAGES)}
    upward = {
        (src, dst)
        for src, dsts in _graph().items()
        for dst in dsts
        if rank[dst.split(".")[0]] > rank[src.split(".")[0]]
    }
    assert upward - KNOWN_UPWARD.keys() == set(), "new imports against cli > pipelines > serving > ..."
    assert KNOWN_UPWARD.keys() - upward == set(), "fixed: delete these entries from KNOWN_UPWARD"


def test_no_import_circles() -> None:
    circles = _circles(_graph())
    new = [sorted(c) for c in circles - KNOWN_CIRCLES.keys()]
    gone = [sorted(c) for c in KNOWN_CIRCLES.keys() - circles]
    assert new == [], f"modules importing each other (function-level imports count): {new}"
    assert gone == [], f"fixed: delete these entries from KNOWN_CIRCLES: {gone}"


def test_shipped_packages_never_import_test_or_benchmark_code() -> None:
    offenders = {
        (m.name, a)
        for m in _modules()
        for n in ast.walk(m.tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in ([x.name for x in n.names] if isinstance(n, ast.Import) else [n.module or ""])
        if a.split(".")[0] in ("tests", "benchmarks")
    }
    assert offenders == set()


def test_no_private_members_of_other_libraries() -> None:
    uses = _private_uses()
    allowed = PINNED_PRIVATE.keys() | KNOWN_PRIVATE.keys()
    assert sorted(uses - allowed) == [], "another library's private member: use its public API"
    assert sorted(allowed - uses) == [], "fixed: delete these entries from PINNED_PRIVATE / KNOWN_PRIVATE"


@pytest.mark.parametrize("module", sorted({m for m, _ in PINNED_PRIVATE}))
def test_pinned_private_uses_run_on_the_version_they_were_checked_on(module: str) -> None:
    """A module relying on a library's privates names the version it was checked on; another version
    fails here, loudly, before anything relies on internals that may have moved."""
    from importlib.metadata import version

    pinned = getattr(importlib.import_module(module), "PINNED_VERSIONS", {})
    for lib in {lib for (m, _), lib in PINNED_PRIVATE.items() if m == module}:
        assert lib in pinned, f"{module} uses {lib}'s private members but pins no {lib} version"
        assert version(lib) == pinned[lib], (
            f"{module} was checked on {lib} {pinned[lib]}, {version(lib)} is installed: re-check its "
            f"private calls (and their results) on this version, then update PINNED_VERSIONS"
        )
