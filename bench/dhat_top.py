#!/usr/bin/env python3
"""Where the allocations come from: the call sites of a dhat-heap.json by blocks allocated,
(dhat's `tbk`), each named by its first frames inside the named crates (bench/counts.sh writes the file).

    bench/dhat_top.py bench/out-counts/dhat-heap.json [requests] [top]
"""
import json, re, sys

path = sys.argv[1]
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 0
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
d = json.load(open(path))
ftbl = d["ftbl"]
# A frame is kept when its file is a registry crate's (`hyper-1.12.0/src/…`) or the gateway's own
# (`src/upstream.rs`, …); the standard library's (`alloc/src/…`, `src/raw_vec/…`) and dhat's say
# nothing about who allocated.
OURS = re.compile(r"\(src/(main|lib|app|body|error|framing|headers|router|routes|state|upstream|middleware|telemetry|store|jwt|queue|config)[/.]")
CRATE = re.compile(r"\(([a-z0-9_-]+)-\d+\.\d+\.\d+[^/]*/")

def site(pp):
    names = []
    for i in pp["fs"]:
        f = ftbl[i]
        m = CRATE.search(f)
        if (m and m.group(1) != "dhat") or OURS.search(f):
            fn = re.search(r": (.*?) \(", f)
            loc = re.search(r"\(([^()]*?):\d+:\d+\)", f)
            names.append(f"{(fn.group(1) if fn else '?')[:48]} ({loc.group(1) if loc else '?'})")
        if len(names) == 2:
            break
    return " ← ".join(names) or "?"

groups = {}
for pp in d["pps"]:
    key = site(pp)
    groups[key] = groups.get(key, 0) + pp["tbk"]
total = sum(groups.values())
print(f"{total} blocks in all" + (f", {total / requests:.1f} per request" if requests else ""))
for key, tb in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
    per = f"{tb / requests:6.2f}/req " if requests else ""
    print(f"{tb:9d} {per}{key}")
