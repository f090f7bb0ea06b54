#!/usr/bin/env python3
"""Builds the Jane Austen character-level corpus from Debian's r-cran-janeaustenr package.

    python3 scripts/prepare_austen.py --out data/austen

Source: the Debian package `r-cran-janeaustenr` (the six novels as R character vectors, one line of
the Project Gutenberg text per element; texts public domain, package MIT). Installing it would pull
in R, so the script only downloads the .deb (`apt-get download`), unpacks it (`dpkg-deb -x`) and reads
the package's lazy-load database (data/Rdata.rdx + Rdata.rdb) with the small reader of R's XDR
serialisation below. No R is needed.

Split (whole novels, so no passage is shared between the sets):
  train: Emma, Mansfield Park, Pride and Prejudice, Sense and Sensibility, and the first 90 % of the
         lines of Northanger Abbey;
  valid: the last 10 % of the lines of Northanger Abbey (model selection, early stopping);
  test:  Persuasion, the held-out novel (reported once at the end).
Output: {train,valid,test}.txt (UTF-8, the novels' lines joined with "\n", a blank line between
novels), one <name>.txt per novel, and stats.json.
"""
import argparse
import glob
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

PACKAGE = "r-cran-janeaustenr"
NOVELS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
TEST_NOVEL = "persuasion"
VALID_NOVEL = "northangerabbey"
VALID_FRACTION = 0.10


class RUnserializer:
    """Reads R's XDR serialisation (format versions 2 and 3): the subset the package's data uses
    (character, integer, logical, double vectors, lists, pairlists, symbols and references)."""

    def __init__(self, data, what):
        self.b, self.p, self.refs, self.what = data, 0, [], what

    def fail(self, msg):
        raise ValueError(f"{self.what}: {msg} at byte {self.p}")

    def int32(self):
        if self.p + 4 > len(self.b):
            self.fail("truncated")
        v = struct.unpack_from(">i", self.b, self.p)[0]
        self.p += 4
        return v

    def raw(self, n):
        if n < 0 or self.p + n > len(self.b):
            self.fail(f"length {n} runs past the end")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def parse(self):
        if self.raw(2) != b"X\n":
            self.fail("not an XDR serialisation")
        version = self.int32()
        self.int32(), self.int32()  # writer's R version, minimal reader version
        if version == 3:
            self.raw(self.int32())  # native encoding name
        elif version != 2:
            self.fail(f"unsupported format version {version}")
        return self.item()

    def numbers(self, fmt, size):
        n = self.int32()
        data = self.raw(n * size)
        return list(struct.unpack(f">{n}{fmt}", data))

    def item(self):
        flags = self.int32()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == 254 or kind in (241, 242, 250, 251, 253):  # NULL, environments, unbound
            return None
        if kind == 255:  # reference to an earlier symbol
            idx = flags >> 8 or self.int32()
            if not 1 <= idx <= len(self.refs):
                self.fail(f"bad reference {idx}")
            return self.refs[idx - 1]
        if kind == 1:  # symbol
            sym = ("symbol", self.item())
            self.refs.append(sym)
            return sym
        if kind in (2, 6):  # pairlist, call: attributes and tag come first
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            return {"kind": "pairlist", "tag": tag, "car": car, "cdr": self.item(), "attr": attr}
        if kind == 9:  # CHARSXP
            n = self.int32()
            return None if n == -1 else self.raw(n).decode("latin-1" if flags & (1 << 14) else "utf-8")
        if kind in (16, 19):  # character vector, list
            values = [self.item() for _ in range(self.int32())]
        elif kind in (10, 13):
            values = self.numbers("i", 4)
        elif kind == 14:
            values = self.numbers("d", 8)
        else:
            self.fail(f"unsupported R type {kind}")
        return {"kind": kind, "values": values, "attr": self.item() if has_attr else None}


def attribute(obj, name):
    node = obj.get("attr")
    while isinstance(node, dict):
        if node.get("tag") == ("symbol", name):
            return node["car"]
        node = node.get("cdr")
    return None


def read_novels(pkg_dir):
    data_dir = os.path.join(pkg_dir, "usr/lib/R/site-library/janeaustenr/data")
    rdx_path, rdb_path = os.path.join(data_dir, "Rdata.rdx"), os.path.join(data_dir, "Rdata.rdb")
    with open(rdx_path, "rb") as f:
        index = RUnserializer(gzip.decompress(f.read()), rdx_path).parse()
    variables = index["values"][0]
    names = attribute(variables, "names")["values"]
    with open(rdb_path, "rb") as f:
        rdb = f.read()
    novels = {}
    for name, entry in zip(names, variables["values"]):
        offset, length = entry["values"]
        blob = rdb[offset:offset + length]
        if len(blob) != length or length < 4:
            raise ValueError(f"{rdb_path}: entry {name} [{offset}, {offset + length}) runs past the file")
        obj = RUnserializer(zlib.decompress(blob[4:]), f"{rdb_path}:{name}").parse()
        novels[name] = [line if line is not None else "" for line in obj["values"]]
    missing = [n for n in NOVELS if n not in novels]
    if missing:
        raise ValueError(f"{rdb_path}: novels missing: {missing}")
    return novels


def fetch_package(work):
    try:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True, capture_output=True)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        sys.exit(f"prepare_austen: apt-get download {PACKAGE} failed (run `apt-get update` once?): "
                 f"{err.decode(errors='replace')[:300]}")
    debs = glob.glob(os.path.join(work, f"{PACKAGE}_*.deb"))
    if not debs:
        sys.exit(f"prepare_austen: no {PACKAGE} .deb downloaded")
    subprocess.run(["dpkg-deb", "-x", debs[0], os.path.join(work, "pkg")], check=True)
    return os.path.join(work, "pkg"), os.path.basename(debs[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/austen")
    ap.add_argument("--deb-dir", help="an already unpacked package (dpkg-deb -x), instead of downloading")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        pkg_dir, deb = (args.deb_dir, "given") if args.deb_dir else fetch_package(work)
        novels = read_novels(pkg_dir)
    os.makedirs(args.out, exist_ok=True)
    for name in NOVELS:
        with open(os.path.join(args.out, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(novels[name]) + "\n")
    valid_lines = novels[VALID_NOVEL]
    cut = int(len(valid_lines) * (1 - VALID_FRACTION))
    parts = {
        "train": [novels[n] for n in NOVELS if n not in (TEST_NOVEL, VALID_NOVEL)] + [valid_lines[:cut]],
        "valid": [valid_lines[cut:]],
        "test": [novels[TEST_NOVEL]],
    }
    stats = {"source": f"Debian package {PACKAGE} ({deb})", "test_novel": TEST_NOVEL,
             "valid": f"last {VALID_FRACTION:.0%} of the lines of {VALID_NOVEL}", "splits": {}}
    for split, texts in parts.items():
        text = "\n\n".join("\n".join(lines) for lines in texts) + "\n"
        tmp = os.path.join(args.out, f".{split}.txt.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(args.out, f"{split}.txt"))
        stats["splits"][split] = {"characters": len(text), "distinct_characters": len(set(text)),
                                  "words": len(text.split())}
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
