"""Print the shape of polymkt_dagster's import graph: modules, levels, loops, largest files.

Used for the before/after figures of a restructuring; the rules the graph must keep (lib/ free
of Dagster, domain layers) are enforced by import-linter (`lint-imports`, see pyproject.toml).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import grimp
import networkx as nx


def module_graph(package: str) -> nx.DiGraph:
    imports = grimp.build_graph(package, cache_dir=None)
    graph = nx.DiGraph()
    for module in imports.modules:
        graph.add_node(module)
        for imported in imports.find_modules_directly_imported_by(module):
            graph.add_edge(module, imported)
    return graph


def source_lines(package: str) -> dict[str, int]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return {
        str(path.relative_to(root.parent)): len(path.read_text().splitlines())
        for path in root.rglob("*.py")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", default="polymkt_dagster")
    parser.add_argument("--top", type=int, default=5, help="how many of the largest files")
    args = parser.parse_args()

    graph = module_graph(args.package)
    loops = [
        component for component in nx.strongly_connected_components(graph) if len(component) > 1
    ]
    condensed = nx.condensation(graph)
    lines = source_lines(args.package)
    print(f"modules: {graph.number_of_nodes()}  import edges: {graph.number_of_edges()}")
    print(f"levels (longest import chain): {nx.dag_longest_path_length(condensed) + 1}")
    print(f"loops: {len(loops)}")
    for loop in loops:
        print("  loop: " + " <-> ".join(sorted(loop)))
    print(f"files over 800 lines: {sum(1 for count in lines.values() if count > 800)}")
    for path, count in sorted(lines.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {count:5d}  {path}")


if __name__ == "__main__":
    main()
