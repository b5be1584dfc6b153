#!/usr/bin/env python3
"""Reports import cycles between the top-level modules of each crate.

For every crate (a `src/lib.rs` or `src/main.rs` under the workspace), each
top-level module (`mod name;` in the crate root) is a node, and a module
depends on another when any of its files names it: `crate::other`,
`crate::{other, ...}`, or a name the crate root re-exports from it
(`pub use other::Thing;` then `crate::Thing`). The strongly connected
components with more than one module are the cycles. Comments and string
literals are ignored.

Usage: scripts/module_cycles.py [workspace root]; exits 1 when it finds a
cycle.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def group_heads(text, start):
    """First path segments of a `{a, b::c, d::{e}}` group opening at `start`."""
    depth, item, heads = 0, "", []
    for char in text[start:]:
        if char == "{":
            depth += 1
            if depth == 1:
                continue
        elif char == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and char == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += char
    return [h.strip().split("::")[0].strip() for h in heads if h.strip()]


def crate_refs(text):
    """Names that follow `crate::` in `text`."""
    names = set()
    for match in re.finditer(r"\bcrate\s*::\s*(\{|" + IDENT + ")", text):
        if match.group(1) == "{":
            names.update(group_heads(text, match.start(1)))
        else:
            names.add(match.group(1))
    return names


def module_files(src, name):
    files = [src / f"{name}.rs"] if (src / f"{name}.rs").exists() else []
    folder = src / name
    if folder.is_dir():
        files += sorted(folder.rglob("*.rs"))
    return files


def crate_graph(root_file):
    src = root_file.parent
    root = strip_comments_and_strings(root_file.read_text())
    modules = re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", root, re.M)
    # Names the crate root re-exports, and the module each comes from.
    exported = {}
    for match in re.finditer(r"^\s*pub\s+use\s+(" + IDENT + r")::([^;]+);", root, re.M):
        source, rest = match.group(1), match.group(2)
        if source in modules:
            for name in re.findall(IDENT, rest.split("::")[-1]):
                exported[name] = source
    graph = {}
    for module in modules:
        edges = set()
        for file in module_files(src, module):
            for name in crate_refs(strip_comments_and_strings(file.read_text())):
                target = name if name in modules else exported.get(name)
                if target and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main():
    workspace = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    roots = sorted(
        p
        for p in list(workspace.glob("src/*.rs")) + list(workspace.glob("crates/*/src/*.rs"))
        if p.name in ("lib.rs", "main.rs")
    )
    failed = False
    for root_file in roots:
        graph = crate_graph(root_file)
        found = cycles(graph)
        edges = sum(len(e) for e in graph.values())
        label = root_file.relative_to(workspace)
        if found:
            failed = True
            for component in found:
                print(f"{label}: cycle between {', '.join(component)}")
        else:
            print(f"{label}: {len(graph)} modules, {edges} dependencies, no cycle")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
