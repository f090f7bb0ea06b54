#!/usr/bin/env python3
"""Paired A/B of two attn builds or settings on one workload (attn against attn; `make bench` is attn
against PyTorch). Each side is an `attn_bench WORKLOAD --serve` process; the library is chosen with
--a-lib / --b-lib (a folder holding libattn.so.0, put first on LD_LIBRARY_PATH) and/or environment
settings with --a-env / --b-env, or side B's whole build with --b-bench (a library whose API changed
needs its own attn_bench, linked against it by its build tree's RPATH):

    cp -L build/libattn.so.0 /tmp/old/            # before the change
    ... change, rebuild ...
    python bench/ab.py transformer_train_step --a-lib /tmp/old --rounds 6 --pairs 10
    python bench/ab.py transformer_train_step --b-env ATTN_GEMM_PANELS=1
    python bench/ab.py greedy_decode --attn-bench /tmp/old/build/bench/attn_bench --b-bench build/bench/attn_bench

Same protocol as run.py: repeats in pairs, alternating which side goes first, fresh processes per
round, and the side started first alternating by round (the process started first measures slower,
see run.py's paired_round). Prints the median over all pairs of time(A) / time(B) (> 1: B is faster),
its quartiles, and in how many pairs B was faster. With an odd --rounds the start order is unbalanced.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import median, paired_round, quartiles  # noqa: E402


def side_env(lib, settings, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if lib:
        rest = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = os.path.abspath(lib) + (":" + rest if rest else "")
    for kv in settings:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"ab.py: environment setting {kv!r} is not KEY=VALUE")
        env[key] = value
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload")
    ap.add_argument("--attn-bench", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         "build", "bench", "attn_bench"))
    ap.add_argument("--b-bench", help="side B's attn_bench, when B is another build tree (default: --attn-bench)")
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
    cmd_b = [a.b_bench or a.attn_bench, a.workload, "--threads", str(a.threads)]
    envs = {"A": side_env(a.a_lib, a.a_env, a.threads), "B": side_env(a.b_lib, a.b_env, a.threads)}
    ratios, times = [], {"A": [], "B": []}
    for r in range(a.rounds):
        # A is run.py's "attn" side and B its "peer"; odd rounds start B first
        _, _, pairs = paired_round(cmd, cmd_b, envs["A"], a.timeout, a.pairs, peer_first=r % 2 == 1,
                                   peer_env=envs["B"], peer_label="B")
        if any("peer" not in p for p in pairs):
            raise SystemExit("ab.py: side B did not start (see the message above)")
        round_ratios = [p["attn"]["s"] / p["peer"]["s"] for p in pairs]
        ratios += round_ratios
        times["A"] += [p["attn"]["s"] for p in pairs]
        times["B"] += [p["peer"]["s"] for p in pairs]
        print(f"round {r} ({'B' if r % 2 else 'A'} started first): median time(A)/time(B) "
              f"{median(round_ratios):.3f}", flush=True)
    q1, q3 = quartiles(ratios)
    print(f"{a.workload}: A median {median(times['A']) * 1e3:.3f} ms, B median {median(times['B']) * 1e3:.3f} ms; "
          f"time(A)/time(B) over {len(ratios)} pairs: median {median(ratios):.3f}, quartiles {q1:.3f}-{q3:.3f}; "
          f"B faster in {sum(x > 1 for x in ratios)}/{len(ratios)}")


if __name__ == "__main__":
    main()
