#!/usr/bin/env python3
"""docs/distributed.md's cost model of a data-parallel step, extrapolated to 8-64 machines:

    python3 scripts/dp_cost_model.py --step 1.52 --step 0.5      # per-machine compute seconds per step

Ring all-reduce of B gradient bytes in k buckets over N machines:
    T_allreduce(N) = 2 (N - 1) / N * B / bandwidth + k * 2 (N - 1) * latency
    exposed(N)     = max(T_allreduce(last bucket), T_allreduce(N) - overlap * T_step)
and the scaling efficiency T_step / (T_step + exposed), without overlap (exposed = T_allreduce) and with
backward hiding up to --overlap of the step. Prints one markdown table per --step.
"""
import argparse


def allreduce(n, nbytes, buckets, bandwidth, latency):
    return 2 * (n - 1) / n * nbytes / bandwidth + buckets * 2 * (n - 1) * latency


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--step", type=float, action="append", required=True, help="per-machine compute seconds per step")
    p.add_argument("--bytes", type=float, default=104.7e6, help="gradient bytes (fp32 bench translator)")
    p.add_argument("--buckets", type=int, default=39)
    p.add_argument("--last-bucket-bytes", type=float, default=16.4e6, help="the bucket final only at the end (embedding)")
    p.add_argument("--latency-us", type=float, default=30.0)
    p.add_argument("--overlap", type=float, default=2 / 3, help="share of the step that backward can hide")
    p.add_argument("--machines", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--gbits", type=float, nargs="+", default=[10, 25, 100])
    a = p.parse_args()
    lat = a.latency_us * 1e-6
    for step in a.step:
        print(f"Per-machine step {step:g} s:\n")
        print("| machines | " + " | ".join(f"{g:g} Gbit/s" for g in a.gbits) + " |")
        print("|---|" + "---|" * len(a.gbits))
        for n in a.machines:
            cells = []
            for g in a.gbits:
                bw = g * 1e9 / 8
                t = allreduce(n, a.bytes, a.buckets, bw, lat)
                last = allreduce(n, a.last_bucket_bytes, 1, bw, lat)
                exposed = max(last, t - a.overlap * step)
                cells.append(f"{t * 1e3:.0f} ms, {step / (step + t):.0%} / {step / (step + exposed):.0%}")
            print(f"| {n} | " + " | ".join(c.replace('%', ' %') for c in cells) + " |")
        print()


if __name__ == "__main__":
    main()
