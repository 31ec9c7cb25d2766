"""The import graph of service/: layers point one way and no module imports itself back.

Every import counts, the ones under `if TYPE_CHECKING:` and inside functions included: a
type-only cycle is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"

# Bottom first. A module may import its own layer and the ones below it, never one above.
# A package is named with a trailing slash; a top-level module of service/ by its name.
LAYERS: list[set[str]] = [
    {"imaging/", "assets/"},  # bytes in, bytes out; the demo's sample photo
    {
        *("errors", "ids", "logs", "moments", "backoff", "redis_url", "records", "keys"),
        *("json_shape", "config/", "shapes/", "storage", "retrying_storage", "fetch", "queue"),
        "output_names",
    },
    {"jobs/", "clients/", "notify/"},  # the record layer, and what messages say
    {"providers/"},
    {"tasks/"},
    # orchestration: a job from submission to its end
    {"runtime", "publishing", "lifecycle", "submission", "launch", "runner", "reaper"},
    {"batches/"},
    {"api/", "console/"},
    {"app", "worker"},
    {"cli/", "__main__"},
]


def _component(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "service"
    return parts[1] + "/" if (SERVICE / parts[1]).is_dir() else parts[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SERVICE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "service":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    yield full if full in modules else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "service")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {t for t in _imports(path, modules) if t in modules and t != name}
        for name, path in modules.items()
    }


def _layer_of(component: str) -> int:
    for number, layer in enumerate(LAYERS):
        if component in layer:
            return number
    raise AssertionError(f"{component} is in no layer of tests/test_architecture.py: place it")


def test_every_package_and_top_level_module_has_a_layer() -> None:
    for module in _modules():
        if module != "service":
            _layer_of(_component(module))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if module != "service"
        for target in targets
        if target != "service" and _layer_of(_component(target)) > _layer_of(_component(module))
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    cycles = [scc for scc in _strongly_connected(graph) if len(scc) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the import graph is deeper than the recursion limit likes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.append(member)
                    if member == node:
                        break
                found.append(sorted(scc))
    return found
