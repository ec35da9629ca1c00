#!/usr/bin/env python3
"""guest_ram_private.py PID SIZE_KIB: check that a VMM's guest RAM is private
anonymous memory shared with nothing.

The guest RAM is the writable mapping of exactly SIZE_KIB in /proc/PID/smaps, or
adjacent ones that add up to it (a nano boot advises huge pages per range, which
splits it in three; a restoring VMM may also map the snapshot's mem file
read-only, as the source it copies pages from).  Exit 0 if it is anonymous, has resident pages and no shared
ones; 1 with the reason on stderr otherwise.
"""
import sys


def main(pid, size):
    maps, cur = [], None
    for line in open(f"/proc/{pid}/smaps"):
        f = line.split()
        if "-" in f[0] and ":" not in f[0]:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            cur = {"name": f[5] if len(f) > 5 else "", "perms": f[1], "lo": lo, "hi": hi}
            maps.append(cur)
        elif f[0].endswith(":") and len(f) >= 2 and f[1].isdigit():
            cur[f[0][:-1]] = int(f[1])
    ram = []
    for i, m in enumerate(maps):  # runs of adjacent writable mappings of SIZE_KIB in all
        run = [m]
        while sum(r["Size"] for r in run) < size and i + len(run) < len(maps):
            n = maps[i + len(run)]
            if n["lo"] != run[-1]["hi"] or n["perms"] != m["perms"] or n["name"] != m["name"]:
                break
            run.append(n)
        if sum(r["Size"] for r in run) == size and m["perms"].startswith("rw"):
            g = {k: sum(r[k] for r in run) for k in ("Rss", "Anonymous", "Shared_Clean", "Shared_Dirty")}
            ram.append(dict(g, name=m["name"]))
    if len(ram) != 1:
        return f"expected one writable {size} KiB mapping, found {len(ram)}"
    g = ram[0]
    if g["name"]:
        return f"guest RAM is file-backed: {g['name']}"
    if g["Shared_Clean"] or g["Shared_Dirty"]:
        return f"guest RAM has shared pages: {g}"
    if not (g["Rss"] > 0 and g["Anonymous"] == g["Rss"]):
        return f"guest RAM is not all anonymous: {g}"
    return None


if __name__ == "__main__":
    err = main(sys.argv[1], int(sys.argv[2]))
    if err:
        sys.stderr.write(f"pid {sys.argv[1]}: {err}\n")
        sys.exit(1)
