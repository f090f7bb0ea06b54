#!/usr/bin/env python3
"""make bench's data-parallel lines (bench/run.py calls rows(); also runnable alone):

    python bench/dp_run.py [--rounds 2] [--steps 5]

transformer_train_step_dp2: the translator's training step (bench/bench_translator.h, torch_bench.py's
transformer_train_step) on 2 processes x 1 thread, each rank its own 32 x (32 + 32)-token batch.
  peer attn-1proc:  attn_dp_bench alone (1 process x 1 thread, the same per-process batch);
                    ratio = 2-process tokens/s / 1-process tokens/s (2.0 = perfect scaling)
  peer pytorch-ddp: torchrun --nproc_per_node 2 bench/torch_ddp_bench.py (DDP, gloo, 1 thread each)
Each round runs attn 1-process, attn 2-process, attn 2-process without overlap (ATTN_DP_OVERLAP=0) and
PyTorch DDP, in an order that alternates between rounds; values are medians over the rounds. The note gives
the share of the reduction time that backward hid: 1 - exposed(overlap) / exposed(no overlap), where
exposed is the time per step spent waiting for the gradient buckets after backward.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["transformer_train_step_dp2"]
# As root in a container without network: shared memory only, no CMA single copy (ptrace is often denied).
MPIRUN_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader",
                "--mca", "btl_vader_single_copy_mechanism", "none"]


def available(build_dir):
    return os.path.exists(os.path.join(build_dir, "bench", "attn_dp_bench")) and shutil.which("mpirun") is not None


def run_json(cmd, env, timeout):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])


def measure(build_dir, python, rounds, steps, timeout):
    exe = os.path.join(build_dir, "bench", "attn_dp_bench")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    args = ["--steps", str(steps), "--warmup", "2"]
    torchrun = os.path.join(os.path.dirname(python), "torchrun")
    runs = {
        "attn1": lambda: run_json([exe] + args, env, timeout),
        "attn2": lambda: run_json(["mpirun"] + MPIRUN_FLAGS + ["-np", "2", exe] + args, env, timeout),
        "attn2_serial": lambda: run_json(["mpirun"] + MPIRUN_FLAGS + ["-np", "2", "-x", "ATTN_DP_OVERLAP", exe] + args,
                                         dict(env, ATTN_DP_OVERLAP="0"), timeout),
        "ddp": lambda: run_json([torchrun, "--nproc_per_node", "2", "--master_port", "29533",
                                 os.path.join(HERE, "torch_ddp_bench.py")] + args, env, timeout),
    }
    if not os.path.exists(torchrun):
        del runs["ddp"]
    got = {k: [] for k in runs}
    order = list(runs)
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            got[k].append(runs[k]())
    return got


def med(results, key):
    return statistics.median(x[key] for x in results)


def rows(build_dir, python, rounds=2, steps=5, timeout=1800):
    got = measure(build_dir, python, rounds, steps, timeout)
    a2 = dict(got["attn2"][0], value=med(got["attn2"], "value"))
    exposed, serial = med(got["attn2"], "exposed_reduce_s"), med(got["attn2_serial"], "exposed_reduce_s")
    hidden = 1 - exposed / serial if serial > 0 else float("nan")
    common = (f"2 processes x 1 thread, 32 x (32 + 32) tokens per process and step; {a2['parameters'] / 1e6:.2f}M "
              f"parameters, {a2['reduce_bytes'] / 2**20:.0f} MiB of gradients in {a2['buckets']} buckets; "
              f"reduction wait after backward {exposed:.3f} s/step with overlap, {serial:.3f} s without: "
              f"{100 * hidden:.0f}% hidden; median of {rounds} rounds")
    a1 = dict(got["attn1"][0], value=med(got["attn1"], "value"))
    out = [{"workload": NAMES[0], "peer": "attn-1proc", "attn": a2, "pytorch": a1, "ratio": a2["value"] / a1["value"],
            "note": f"ratio = scaling over 1 process (2.0 ideal, {100 * a2['value'] / a1['value'] / 2:.0f}% "
                    f"efficiency); " + common}]
    if "ddp" in got:
        d = dict(got["ddp"][0], value=med(got["ddp"], "value"))
        out.append({"workload": NAMES[0], "peer": "pytorch-ddp", "attn": a2, "pytorch": d,
                    "ratio": a2["value"] / d["value"], "note": "PyTorch DDP, gloo, torchrun; " + common})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("ATTN_BUILD_DIR", os.path.join(os.path.dirname(HERE), "build")))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    if not available(a.build_dir):
        print("dp_run.py: needs <build>/bench/attn_dp_bench and mpirun", file=sys.stderr)
        return 2
    for r in rows(a.build_dir, a.python, a.rounds, a.steps):
        print("\t".join([r["workload"], r["peer"], f"{r['attn']['value']:.1f}", f"{r['pytorch']['value']:.1f}",
                         "tokens/s", f"{r['ratio']:.2f}", r["note"]]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
