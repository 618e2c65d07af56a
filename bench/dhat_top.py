#!/usr/bin/env python3
"""Where the allocations come from: the call sites of a dhat-heap.json by blocks allocated,
each named by its first frames inside the named crates (bench/counts.sh writes the file).

    bench/dhat_top.py bench/out-counts/dhat-heap.json [requests] [top]
"""
import json, re, sys

path = sys.argv[1]
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 0
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
d = json.load(open(path))
ftbl = d["ftbl"]
SKIP = re.compile(r"alloc::|core::|std::|dhat::|<alloc|<core|<std|__rust|hashbrown::raw|\[root\]|mimalloc")

def site(pp):
    frames = [ftbl[i] for i in pp["fs"]]
    keep = [f for f in frames if not SKIP.search(f)]
    names = []
    for f in keep[:3]:
        m = re.search(r": (.*?) \(", f)
        names.append((m.group(1) if m else f)[:90])
    return " ← ".join(names) or frames[0][:90]

groups = {}
for pp in d["pps"]:
    key = site(pp)
    groups[key] = groups.get(key, 0) + pp["tb"]
total = sum(groups.values())
print(f"{total} blocks in all" + (f", {total / requests:.1f} per request" if requests else ""))
for key, tb in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
    per = f"{tb / requests:6.2f}/req " if requests else ""
    print(f"{tb:9d} {per}{key}")
