#!/usr/bin/env python3
"""PyTorch's side of `make bench`: the twin of bench/attn_bench.cc (same workload names, shapes, units).

    python bench/torch_bench.py --list
    python bench/torch_bench.py gemm_2048 --threads 2     # prints one JSON object, like attn_bench

Each workload returns a function that runs one iteration; measure() runs warm-up iterations, then
reports the median seconds per iteration over several repeats (same policy as bench/bench_util.h).
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def measure(fn, warmup=3, repeats=7, min_repeat_seconds=0.25):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    iters = max(1, min(int(min_repeat_seconds / one), 1 << 20))
    per_iter = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        per_iter.append((time.perf_counter() - start) / iters)
    per_iter.sort()
    return {"median_s": per_iter[len(per_iter) // 2], "min_s": per_iter[0], "max_s": per_iter[-1],
            "iters_per_repeat": iters, "repeats": repeats}


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def train_step(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return measure(step), "steps/s"


def fwd_bwd(op):
    x = torch.randn(64 * 128, 512, requires_grad=True)  # (B * T, C)
    g = torch.randn(64 * 128, 512)

    def it():
        x.grad = None
        op(x).backward(g)
    return measure(it), "it/s"


def gemm_2048():
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = measure(lambda: torch.matmul(a, b), warmup=2)
    return t, "GFLOP/s", 2.0 * n ** 3 / t["median_s"] / 1e9


def layer_norm_fwd_bwd():
    w = torch.ones(512, requires_grad=True)
    b = torch.zeros(512, requires_grad=True)

    def op(x):
        w.grad = None
        b.grad = None
        return F.layer_norm(x, (512,), w, b)
    return fwd_bwd(op)


WORKLOADS = {
    "gemm_2048": gemm_2048,
    "mlp_train_step": lambda: train_step(mlp(), torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))),
    "cnn_train_step": lambda: train_step(cnn(), torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))),
    "softmax_fwd_bwd": lambda: fwd_bwd(lambda x: torch.softmax(x, -1)),
    "layer_norm_fwd_bwd": layer_norm_fwd_bwd,
    "gelu_fwd_bwd": lambda: fwd_bwd(F.gelu),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        print("\n".join(WORKLOADS))
        return 0
    if a.workload not in WORKLOADS:
        print(f"torch_bench: unknown workload {a.workload!r} (--list shows them)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = WORKLOADS[a.workload]()
    timing, unit = out[0], out[1]
    value = out[2] if len(out) > 2 else 1.0 / timing["median_s"]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"workload": a.workload, "value": value, "unit": unit, **timing,
                      "threads": torch.get_num_threads(), "peak_rss_mib": rss_mib,
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
