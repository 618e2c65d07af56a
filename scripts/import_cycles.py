#!/usr/bin/env python3
"""Fails when files of src/ import each other in a cycle (issue #16, STYLE "Imports point down").

A file's module path comes from its location (src/a/b.rs -> a::b, src/a.rs -> a). Each
`use crate::x::y…` (and `crate::x::y` paths in code) is an edge to the deepest module of that
path that exists. A folder module and its own children may use each other: edges between a
module and its ancestors or descendants are ignored. Prints every cycle (strongly connected
component of more than one file) and exits 1 if there is one.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return "crate"
    if parts[0] == "bin":
        return "bin::" + "::".join(parts[1:])
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "::") or b.startswith(a + "::")


def main() -> int:
    files = {module_of(p): p for p in SRC.rglob("*.rs")}
    modules = set(files)
    edges = {m: set() for m in modules}
    path_re = re.compile(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")
    group_re = re.compile(r"use crate::\{([^;]*)\};", re.S)
    for mod, path in files.items():
        text = path.read_text()
        # Drop comments and the test module (tests may reach anywhere).
        text = re.sub(r"//[^\n]*", "", text)
        cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
        if cut:
            text = text[: cut.start()]
        targets = [m.group(1) for m in path_re.finditer(text)]
        for g in group_re.finditer(text):
            targets += [t.strip().split("::")[0] for t in g.group(1).split(",") if t.strip()]
        for t in targets:
            parts = t.split("::")
            for i in range(len(parts), 0, -1):
                cand = "::".join(parts[:i])
                if cand in modules:
                    if not related(mod, cand):
                        edges[mod].add(cand)
                    break
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    if not sccs:
        print(f"import cycles: none among {len(modules)} files")
        return 0
    for comp in sccs:
        print(f"import cycle among {len(comp)} files: " + ", ".join(comp))
        for v in comp:
            inside = sorted(w for w in edges[v] if w in comp)
            print(f"  {v} -> {', '.join(inside)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
