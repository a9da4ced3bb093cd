"""Fail when any modules of a package import each other in a cycle; name each cycle found.

    python scripts/check_imports.py          # checks ``hif`` as importable from the current directory

import-linter's layer and independence contracts only see imports between the modules they
name, so a cycle inside one sub-package, or one hidden in a function-level import, passes them.
This check builds grimp's graph of every module, counting imports inside functions and under
``TYPE_CHECKING`` (a reader follows those too), finds the strongly connected components and
prints one concrete cycle per component with the line of each import. Exit status 1 on any
cycle, 0 otherwise; CI runs it (.ci/run) and tests/unit/test_import_contracts.py proves it live.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import deque
from collections.abc import Iterator

import grimp


def import_graph(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Every module of the package and the modules of the package it imports directly."""
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative
    so a deep package cannot hit the recursion limit), each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def shortest_cycle(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module: a path a reader can follow."""
    members, start = set(component), component[0]
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if child not in parents:
                parents[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def describe(graph: grimp.ImportGraph, edges: dict[str, set[str]], components: list[list[str]]) -> list[str]:
    lines = []
    for component in components:
        path = shortest_cycle(edges, component)
        lines.append(f"cycle among {len(component)} modules: {', '.join(component)}")
        for importer, imported in itertools.pairwise(path):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = f" (line {details[0]['line_number']}: {details[0]['line_contents']})" if details else ""
            lines.append(f"  {importer} -> {imported}{where}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fail on import cycles inside a package.")
    parser.add_argument("package", nargs="?", default="hif")
    args = parser.parse_args(argv)
    if "" not in sys.path:
        sys.path.insert(0, "")  # the package as found from the current directory, like `python -m`
    graph = grimp.build_graph(args.package, include_external_packages=False, cache_dir=None)
    edges = import_graph(graph)
    components = cycles(edges)
    if not components:
        print(f"check_imports: {len(edges)} modules in {args.package}, no import cycles")
        return 0
    print("\n".join(describe(graph, edges, components)))
    print(f"check_imports: {len(components)} import cycle(s) in {args.package}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
