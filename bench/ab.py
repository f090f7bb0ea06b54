#!/usr/bin/env python3
"""Paired A/B of two attn builds or settings on one workload (attn against attn; `make bench` is attn
against PyTorch). Each side is an `attn_bench WORKLOAD --serve` process; the library is chosen with
--a-lib / --b-lib (a folder holding libattn.so.0, put first on LD_LIBRARY_PATH) and/or environment
settings with --a-env / --b-env:

    cp -L build/libattn.so.0 /tmp/old/            # before the change
    ... change, rebuild ...
    python bench/ab.py transformer_train_step --a-lib /tmp/old --rounds 6 --pairs 10
    python bench/ab.py transformer_train_step --b-env ATTN_GEMM_PANELS=1

Same protocol as run.py: repeats in pairs, alternating which side goes first, fresh processes per
round, and the side started first alternating by round (the process started first measures slower,
see run.py's paired_round). Prints the median over all pairs of time(A) / time(B) (> 1: B is faster),
its quartiles, and in how many pairs B was faster. With an odd --rounds the start order is unbalanced.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Server, median  # noqa: E402


def side_env(lib, settings, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if lib:
        env["LD_LIBRARY_PATH"] = os.path.abspath(lib) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    for kv in settings:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"ab.py: environment setting {kv!r} is not KEY=VALUE")
        env[key] = value
    return env


def quartiles(xs):
    xs = sorted(xs)
    return xs[len(xs) // 4], xs[(3 * len(xs)) // 4]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload")
    ap.add_argument("--attn-bench", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         "build", "bench", "attn_bench"))
    ap.add_argument("--a-lib", help="folder with side A's libattn.so.0")
    ap.add_argument("--b-lib", help="folder with side B's libattn.so.0")
    ap.add_argument("--a-env", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--b-env", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()

    cmd = [a.attn_bench, a.workload, "--threads", str(a.threads)]
    envs = {"A": side_env(a.a_lib, a.a_env, a.threads), "B": side_env(a.b_lib, a.b_env, a.threads)}
    ratios, times = [], {"A": [], "B": []}
    for r in range(a.rounds):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        servers = {}
        try:
            for side in order:
                servers[side] = Server(cmd, envs[side], a.timeout, side)
            for i in range(a.pairs):
                s = {}
                for side in (order if i % 2 == 0 else order[::-1]):
                    s[side] = servers[side].repeat()["s"]
                    times[side].append(s[side])
                ratios.append(s["A"] / s["B"])
            for server in servers.values():
                server.finish()
        finally:
            for server in servers.values():
                server.close()
        print(f"round {r} ({order[0]} started first): median time(A)/time(B) "
              f"{median(ratios[-a.pairs:]):.3f}", flush=True)
    q1, q3 = quartiles(ratios)
    print(f"{a.workload}: A median {median(times['A']) * 1e3:.3f} ms, B median {median(times['B']) * 1e3:.3f} ms; "
          f"time(A)/time(B) over {len(ratios)} pairs: median {median(ratios):.3f}, quartiles {q1:.3f}-{q3:.3f}; "
          f"B faster in {sum(x > 1 for x in ratios)}/{len(ratios)}")


if __name__ == "__main__":
    main()
