#!/usr/bin/env python3
"""`make bench`: attn vs PyTorch on the same workloads, same thread count, each side in its own process.

    python bench/run.py                        # every workload
    python bench/run.py gemm_2048 gelu_fwd_bwd # a subset (make bench ARGS="gemm_2048 gelu_fwd_bwd")
    python bench/run.py --markdown docs.md     # also write the table as Markdown
    python bench/run.py --rounds 9             # 9 alternating rounds per side (default 3); the median-ratio round is shown

Prints one line per workload and peer, tab separated:

    workload  peer  attn_value  peer_value  unit  ratio  attn_peak_rss_MiB  peer_peak_rss_MiB  [note]

ratio = attn throughput / peer throughput (> 1: attn is faster). Peak RSS is each process's
high-water mark (getrusage ru_maxrss): the PyTorch figure includes the interpreter and torch itself.

The workloads are the ones `attn_bench --list` names; each has a twin of the same name in
bench/torch_bench.py. Adding one = a row in attn_bench.cc's kWorkloads and one in torch_bench.py's
WORKLOADS (plus, optionally, a NOTES entry here).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEAK_GFLOPS = 380.0  # fp32 peak of this 2-core machine, for gemm's "% of peak"

# Optional extra text per workload: f(attn_result, peer_result) -> str
def params_note(a, p):
    """Parameter counts of both models (they must agree: the same architecture on both sides)."""
    note = f"{a['parameters'] / 1e6:.2f}M parameters"
    if p and p.get("parameters") != a["parameters"]:
        note += f" (PYTORCH HAS {p.get('parameters')}: NOT THE SAME MODEL)"
    return note


NOTES = {
    "gemm_2048": lambda a, p: (f"attn {100 * a['value'] / PEAK_GFLOPS:.1f}% of {PEAK_GFLOPS:.0f} GFLOP/s"
                               + (f", pytorch {100 * p['value'] / PEAK_GFLOPS:.1f}%" if p else "")
                               + (f"; FMA ceiling measured now {a['fma_peak_gflops']:.0f} GFLOP/s: attn "
                                  f"{100 * a['value'] / a['fma_peak_gflops']:.1f}%"
                                  + (f", pytorch {100 * p['value'] / a['fma_peak_gflops']:.1f}%" if p else "")
                                  if a.get('fma_peak_gflops') else "")),
    "transformer_train_step": lambda a, p: params_note(a, p) + "; tokens = 32 x (32 src + 32 tgt) per step",
    "greedy_decode": lambda a, p: (params_note(a, p) + "; 32 x 32 generated tokens per run; attn KV cache, "
                                   "pytorch re-runs the decoder on the prefix"),
}


def find_attn_bench(build_dir, build):
    exe = os.path.join(build_dir, "bench", "attn_bench")
    if os.path.exists(exe) and not build:
        return exe
    if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=sys.stderr)
    subprocess.run(["cmake", "--build", build_dir, "-j2", "--target", "attn_bench"], check=True, stdout=sys.stderr)
    return exe


def run_json(cmd, env, timeout):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", help="subset to run (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build-dir", default=os.environ.get("ATTN_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--attn-bench", help="path of the attn_bench binary (default: <build-dir>/bench/attn_bench)")
    ap.add_argument("--build", action="store_true", help="(re)build attn_bench first")
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch for the PyTorch side")
    ap.add_argument("--no-peer", action="store_true", help="run attn only")
    ap.add_argument("--markdown", help="also write the results as a Markdown table to this file")
    ap.add_argument("--json", help="also write the raw results as JSON to this file")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--rounds", type=int, default=3,
                    help="run each workload this many times per side, alternating attn and PyTorch, and report "
                         "the round with the median ratio (default 3: one round's ratio moves by 20-40%% on a "
                         "shared host)")
    a = ap.parse_args()

    exe = a.attn_bench or find_attn_bench(a.build_dir, a.build)
    available = subprocess.run([exe, "--list"], capture_output=True, text=True, check=True).stdout.split()
    names = a.workloads or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"run.py: unknown workload(s) {', '.join(unknown)}; known: {' '.join(available)}", file=sys.stderr)
        return 2

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    peer_ok = not a.no_peer
    if peer_ok and subprocess.run([a.python, "-c", "import torch"], capture_output=True).returncode != 0:
        print(f"run.py: {a.python} cannot import torch; PyTorch columns are '-'", file=sys.stderr)
        peer_ok = False

    print("# workload\tpeer\tattn_value\tpeer_value\tunit\tratio\tattn_peak_rss_MiB\tpeer_peak_rss_MiB\tnote", flush=True)
    rows = []
    failed = False
    for name in names:
        rounds = []  # (attn result, peer result) per round, attn and PyTorch alternating
        for _ in range(max(1, a.rounds)):
            try:
                ar = run_json([exe, name, "--threads", str(a.threads)], env, a.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"run.py: attn {name}: {e}", file=sys.stderr)
                failed = True
                break
            pr = None
            if peer_ok:
                try:
                    pr = run_json([a.python, os.path.join(HERE, "torch_bench.py"), name, "--threads", str(a.threads)],
                                  env, a.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"run.py: pytorch {name}: {e}", file=sys.stderr)
            rounds.append((ar, pr))
        if not rounds:
            continue
        if len(rounds) > 1 and all(p for _, p in rounds):
            rounds.sort(key=lambda r: r[0]["value"] / r[1]["value"])
            ar, pr = rounds[len(rounds) // 2]
            ar = dict(ar, round_ratios=[round(x["value"] / y["value"], 3) for x, y in rounds])
        else:
            ar, pr = rounds[-1]
        ratio = ar["value"] / pr["value"] if pr else None
        note = NOTES[name](ar, pr) if name in NOTES else ""
        if "round_ratios" in ar:
            note = (note + "; " if note else "") + "ratios of the rounds: " + ", ".join(f"{r:.2f}" for r in ar["round_ratios"])
        row = {"workload": name, "peer": "pytorch", "attn": ar, "pytorch": pr, "ratio": ratio, "note": note}
        rows.append(row)
        print("\t".join([name, "pytorch", fmt(ar["value"]), fmt(pr["value"] if pr else None), ar["unit"],
                         f"{ratio:.2f}" if ratio else "-", f"{ar['peak_rss_mib']:.0f}",
                         f"{pr['peak_rss_mib']:.0f}" if pr else "-", note]), flush=True)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("| workload | attn | PyTorch | unit | ratio | attn peak RSS (MiB) | PyTorch peak RSS (MiB) | note |\n")
            f.write("|---|---:|---:|---|---:|---:|---:|---|\n")
            for r in rows:
                p = r["pytorch"]
                f.write(f"| {r['workload']} | {fmt(r['attn']['value'])} | {fmt(p['value'] if p else None)} | "
                        f"{r['attn']['unit']} | {r['ratio']:.2f} | {r['attn']['peak_rss_mib']:.0f} | "
                        f"{p['peak_rss_mib']:.0f} | {r['note']} |\n" if p else
                        f"| {r['workload']} | {fmt(r['attn']['value'])} | - | {r['attn']['unit']} | - | "
                        f"{r['attn']['peak_rss_mib']:.0f} | - | {r['note']} |\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
