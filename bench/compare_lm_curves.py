#!/usr/bin/env python3
"""Compares two held-out loss curves (metrics.jsonl of `attn train-lm` and bench/torch_char_lm.py) at equal steps.

    python3 bench/compare_lm_curves.py runs/lm-lstm/metrics.jsonl runs/torch-lm/metrics.jsonl --tolerance 0.02

Prints a markdown table (step, both losses, difference, both sides' cumulative training seconds) of the
steps where both files have the metric (default valid/loss). With --tolerance, exits 1 when the
difference at the last common step is larger. A run directory may be given instead of its metrics.jsonl.
A resumed run's file may repeat steps (lines past the resumed step are redone): the last line wins.
"""
import argparse
import json
import os
import sys


def read_curve(path, tag):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    curve = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not JSON: {e}")
            if row.get(tag) is not None:
                curve[int(row["step"])] = (float(row[tag]), row.get("train/seconds"))
    if not curve:
        sys.exit(f"{path}: no line has {tag!r}")
    return curve


def fmt_seconds(s):
    return "" if s is None else f"{s:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="metrics.jsonl (or run directory) of the first side, e.g. attn")
    p.add_argument("b", help="metrics.jsonl (or run directory) of the second side, e.g. PyTorch")
    p.add_argument("--names", nargs=2, default=["attn", "pytorch"])
    p.add_argument("--tag", default="valid/loss")
    p.add_argument("--tolerance", type=float, default=None, help="largest |a - b| allowed at the last common step")
    a = p.parse_args()
    ca, cb = read_curve(a.a, a.tag), read_curve(a.b, a.tag)
    common = sorted(set(ca) & set(cb))
    if not common:
        sys.exit(f"no common step: {a.a} has {sorted(ca)}, {a.b} has {sorted(cb)}")
    na, nb = a.names
    print(f"| step | {na} {a.tag} | {nb} {a.tag} | {na} - {nb} | {na} train s | {nb} train s |")
    print("|---|---|---|---|---|---|")
    for step in common:
        (la, sa), (lb, sb) = ca[step], cb[step]
        print(f"| {step} | {la:.4f} | {lb:.4f} | {la - lb:+.4f} | {fmt_seconds(sa)} | {fmt_seconds(sb)} |")
    last = common[-1]
    diff = ca[last][0] - cb[last][0]
    if a.tolerance is not None:
        ok = abs(diff) <= a.tolerance
        print(f"\nstep {last}: |{na} - {nb}| = {abs(diff):.4f} {'<=' if ok else '>'} {a.tolerance}")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
