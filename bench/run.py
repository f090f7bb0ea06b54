#!/usr/bin/env python3
"""`make bench`: attn vs PyTorch on the same workloads, same thread count, each side in its own process.

    python bench/run.py                        # every workload, against both peers
    python bench/run.py gemm_2048 gelu_fwd_bwd # a subset (make bench ARGS="gemm_2048 gelu_fwd_bwd")
    python bench/run.py --peers pytorch        # only the eager peer (pytorch-compile takes minutes to compile)
    python bench/run.py --markdown docs.md     # also write the table as Markdown
    python bench/run.py --rounds 6 --pairs 9   # 6 fresh process pairs x 9 timed pairs (default 4 x 6)

The peers (bench/README.md, "The peer"): `pytorch` is eager PyTorch as a performance-minded user writes
it (fused Adam, inference mode, a key/value-cached decoding loop, 2 threads); `pytorch-compile` is the
same model and step under torch.compile (inductor), run for training-step and decoding workloads (for
the others, and where it cannot compile, its line says why). Compilation happens in the untimed warm-up.
`pytorch-autocast-bf16` runs the `*_bf16` workloads that have an autocast form (transformer_train_step_bf16,
lstm_lm_train_step_bf16, gru_lm_train_step_bf16, greedy_decode_bf16, minilm_embed_bf16,
minilm_finetune_step_bf16) under torch.autocast("cpu", dtype=torch.bfloat16); against `pytorch` the
training steps and minilm_embed_bf16 compare attn's bf16 with PyTorch's fp32,
while gemm_2048_bf16 and greedy_decode_bf16 are bf16 on both sides (the model in bf16 for decoding).

Paired measurement: for each workload and round both sides start (attn_bench --serve and
torch_bench.py --serve; attn first in even rounds, PyTorch first in odd ones), warm up, and then
time one repeat at a time in turn: attn, PyTorch, PyTorch, attn, ... A pair's ratio compares two
repeats taken seconds apart, so a slow minute of a shared host slows both sides alike; the ratio
printed is the median of the pairs' ratios over all rounds.

Prints one line per workload and peer, tab separated:

    workload  peer  attn_value  peer_value  unit  ratio  attn_peak_MiB  attn_above_base_MiB
    peer_peak_MiB  peer_above_base_MiB  [note]

ratio = attn throughput / peer throughput (> 1: attn is faster). Peak is each process's resident
high-water mark (getrusage ru_maxrss; the PyTorch figure includes the interpreter and torch itself);
above_base is that peak minus the process's own resident size at start-up (attn: as the process
starts; PyTorch: right after `import torch`), i.e. what the workload itself added. Both are the
maximum over the rounds' processes.

`transformer_train_step_dp2` (bench/dp_run.py) is the translator's step data-parallel on 2 processes x 1
thread under mpirun, with peers `attn-1proc` (scaling) and `pytorch-ddp` (DDP, gloo, torchrun).

`translate_{beam4,greedy_b1}_{fp32,int8}` (bench/ct2_run.py) translate the held-out Bible verses with a
trained translator (ATTN_BENCH_TRANSLATOR=RUN_DIR, a `train-translator --marian` run; skipped without one)
in attn and in CTranslate2 (peer `ctranslate2`), the same exported model on both sides, BLEU in the note.

`<workload>_busy_core` (greedy_decode, transformer_train_step) runs the workload while a spinning process
keeps one core busy, with two lines: peer `pytorch` (both sides under that load) and peer `attn-idle` (attn
under load / attn idle, toggled between the repeats of one process); see bench/busy_core.py.

The workloads are the ones `attn_bench --list` names; each has a twin of the same name in
bench/torch_bench.py. Adding one = a row in attn_bench.cc's kWorkloads and one in torch_bench.py's
WORKLOADS (plus, optionally, a NOTES entry here); bench/check_peers.py (a ctest test) then checks that
both sides report the same units and parameters for it.
"""
import argparse
import json
import os
import select
import subprocess
import sys
import tempfile

import busy_core
import ct2_run
import dp_run
import hf_notes

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


def lm_note(a, p):
    """Char-LM training steps: each side's effective GFLOP/s (tokens/s x the model's MFLOP per token) and
    its share of the FMA ceiling measured before each attn repeat (the ceiling's median)."""
    note = params_note(a, p) + f"; 32 x 64 tokens per step, {a['mflop_per_token']:.1f} MFLOP/token"
    ceiling = a.get("fma_peak_gflops")
    for side, r in (("attn", a), ("pytorch", p)):
        if r:
            gflops = r["value"] * a["mflop_per_token"] / 1e3
            note += f"; {side} {gflops:.0f} GFLOP/s" + (f" ({100 * gflops / ceiling:.0f}% of FMA ceiling "
                                                        f"{ceiling:.0f})" if ceiling else "")
    return note


NOTES = {
    "gemm_2048": lambda a, p: (f"attn {100 * a['value'] / PEAK_GFLOPS:.1f}% of {PEAK_GFLOPS:.0f} GFLOP/s"
                               + (f", pytorch {100 * p['value'] / PEAK_GFLOPS:.1f}%" if p else "")
                               + (f"; FMA ceiling measured before each attn repeat, median "
                                  f"{a['fma_peak_gflops']:.0f} GFLOP/s; median share of it per repeat: attn "
                                  f"{100 * a['share_of_ceiling']:.1f}%"
                                  + (f", pytorch {100 * p['share_of_ceiling']:.1f}%" if p else "")
                                  if a.get('fma_peak_gflops') else "")),
    "transformer_train_step": lambda a, p: params_note(a, p) + "; tokens = 32 x (32 src + 32 tgt) per step",
    "greedy_decode": lambda a, p: (params_note(a, p) + "; 32 x 32 generated tokens per run; key/value cache "
                                   "on both sides"),
    "greedy_decode_bf16": lambda a, p: (params_note(a, p) + "; 32 x 32 generated tokens per run; the model in "
                                        "bf16 on both sides (Module::to / model.to); autocast peer: under torch.autocast"),
    "minilm_embed": lambda a, p: hf_notes.minilm_embed(a, p, params_note),
    "minilm_finetune_step": lambda a, p: hf_notes.minilm_finetune_step(a, p, params_note),
    "minilm_embed_bf16": lambda a, p: params_note(a, p) + "; attn under Autocast (peer: fp32, or under torch.autocast)",
    "minilm_finetune_step_bf16": lambda a, p: params_note(a, p) + "; attn under Autocast (peer: fp32, or under torch.autocast)",
    "gpt2_generate": lambda a, p: hf_notes.gpt2_generate(a, p, params_note),
    "mlp_train_step": lambda a, p: params_note(a, p),
    "cnn_train_step": lambda a, p: params_note(a, p),
    "lstm_lm_train_step": lambda a, p: lm_note(a, p),
    "gru_lm_train_step": lambda a, p: lm_note(a, p),
    "lstm_sample": lambda a, p: params_note(a, p) + "; batch 1, 128 characters sampled one at a time per run",
    "textcnn_train_step": lambda a, p: params_note(a, p) + "; batch 32 x 200 word ids, widths 3/4/5 x 100 filters",
}
for _w in busy_core.WORKLOADS:  # *_busy_core: the same workload beside a spinning process (bench/busy_core.py)
    NOTES[_w + busy_core.SUFFIX] = (lambda w: lambda a, p: "both sides beside a spinning process; "
                                    + NOTES[w](a, p))(_w)

# The peers: name -> extra torch_bench.py arguments.
# pytorch-autocast-bf16: the *_bf16 workloads under torch.autocast("cpu", dtype=torch.bfloat16) (torch_bench.py
# says which have that form); other workloads are not paired with it. onnxruntime: bench/hf_bench.py.
PEERS = {"pytorch": [], "pytorch-compile": ["--compile"], "pytorch-autocast-bf16": ["--autocast-bf16"],
         "onnxruntime": ["--onnxruntime"]}


class PeerUnavailable(Exception):
    """The peer does not run this workload (e.g. pytorch-compile for a kernel micro-benchmark, or the
    compiler failed); str() says why. Not a RuntimeError: paired_round lets it through."""


def find_attn_bench(build_dir, build):
    exe = os.path.join(build_dir, "bench", "attn_bench")
    if os.path.exists(exe) and not build:
        return exe
    if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=sys.stderr)
    subprocess.run(["cmake", "--build", build_dir, "-j2", "--target", "attn_bench"], check=True, stdout=sys.stderr)
    return exe


class Server:
    """One side of a paired measurement: a benchmark process in --serve mode (bench_util.h's serve())."""

    def __init__(self, cmd, env, timeout, label):
        self.label, self.timeout = label, timeout
        # stderr goes to a file: a pipe nobody reads could fill up and stall the process
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(cmd + ["--serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, bufsize=1)
        self.ready = self._read()
        if not self.ready.get("ready", False):
            why = self.ready.get("unavailable", f"unexpected first line {self.ready}")
            self.close()
            raise PeerUnavailable(why)

    def _read(self):
        ready, _, _ = select.select([self.p.stdout], [], [], self.timeout)
        line = self.p.stdout.readline() if ready else ""
        if not line:
            if self.p.poll() is None:
                self.p.kill()
            self.p.wait()
            tail = self.stderr_tail()
            self.close()
            raise RuntimeError(f"{self.label}: no answer ({'timeout' if not ready else 'exited'}): {tail}")
        return json.loads(line)

    def stderr_tail(self):
        try:
            self.err.seek(0)
            return self.err.read()[-2000:].strip()
        except (OSError, ValueError):
            return ""

    def repeat(self):
        """Times one repeat; returns {"s": seconds per iteration[, "probe": ...]}."""
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        return self._read()

    def finish(self):
        """Ends the process; returns its summary (unit, units_per_iteration, peak RSS, extras)."""
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        summary = self._read()
        self.p.wait(timeout=self.timeout)
        return summary

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.err.close()


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2 if n else None


def quartiles(xs):
    """(lower, upper) quartile of xs, as the notes print them."""
    xs = sorted(xs)
    return xs[len(xs) // 4], xs[(3 * len(xs)) // 4]


def paired_round(attn_cmd, peer_cmd, env, timeout, pairs, peer_first=False, peer_env=None, peer_label="pytorch"):
    """Starts both sides (one after the other, so their warm-ups do not overlap; the peer first when
    peer_first; the peer with peer_env when given, else env), then times `pairs` pairs of repeats,
    alternating which side goes first. Returns (attn summary, peer summary or None, list of per-pair
    dicts with keys "attn" and "peer"). bench/ab.py pairs two attn builds with it.

    The start order matters: two identical attn_bench processes, paired like this, measured the one
    started first 1.5-2.6 % slower over 61 pairs (either way round), so main() alternates it by round."""
    attn = peer = None

    def start_peer():
        try:
            return Server(peer_cmd, peer_env or env, timeout, peer_label)
        except RuntimeError as e:
            print(f"run.py: {e}", file=sys.stderr)
            return None

    if peer_cmd and peer_first:
        peer = start_peer()
    try:
        attn = Server(attn_cmd, env, timeout, "attn")
        if peer_cmd and not peer_first:
            peer = start_peer()
        out = []
        for i in range(pairs):
            sides = [("attn", attn), ("peer", peer)] if i % 2 == 0 else [("peer", peer), ("attn", attn)]
            pair = {}
            for key, server in sides:
                if server:
                    pair[key] = server.repeat()
            out.append(pair)
        return attn.finish(), peer.finish() if peer else None, out
    finally:
        if attn:
            attn.close()
        if peer:
            peer.close()


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"


def measure_workload(name, exe, peer, a, env):
    """All rounds of one workload against one peer. Returns the row (see main) or None when attn failed;
    raises PeerUnavailable when the peer does not run the workload."""
    busy = busy_core.base(name)  # a *_busy_core name: the workload beside a spinning process
    attn_cmd = [exe, busy or name, "--threads", str(a.threads)]
    peer_cmd = ([a.python, os.path.join(HERE, "torch_bench.py"), busy or name, "--threads", str(a.threads)]
                + PEERS[peer] if peer else None)
    compiled = peer == "pytorch-compile"
    rounds = a.compile_rounds if compiled else a.rounds
    timeout = a.compile_timeout if compiled else a.timeout
    summaries, pairs = [], []
    for r in range(max(1, rounds)):
        try:
            with busy_core.load(busy is not None):
                ar, pr, ps = paired_round(attn_cmd, peer_cmd, env, timeout, max(1, a.pairs), peer_first=r % 2 == 1,
                                          peer_label=peer or "pytorch")
        except (RuntimeError, OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            print(f"run.py: {name}: {e}", file=sys.stderr)
            return None
        summaries.append((ar, pr))
        pairs += ps
    ar, pr = summaries[-1]
    units_a = ar["units_per_iteration"]

    def memory(summary_index):
        got = [s[summary_index] for s in summaries if s[summary_index]]
        return {"peak_rss_mib": max(s["peak_rss_mib"] for s in got),
                "peak_above_baseline_mib": max(s.get("peak_above_baseline_mib", float("nan")) for s in got)}

    # Each side's throughput: the median over all its repeats (all rounds).
    ar = dict(ar, value=units_a / median([p["attn"]["s"] for p in pairs]), repeats=len(pairs), **memory(0))
    both = [p for p in pairs if "attn" in p and "peer" in p]
    ratio = None
    if pr and both:
        units_p = pr["units_per_iteration"]
        pr = dict(pr, value=units_p / median([p["peer"]["s"] for p in both]), repeats=len(both), **memory(1))
        # The ratio of a pair: attn's throughput over the peer's in two adjacent repeats.
        pair_ratios = sorted((units_a / p["attn"]["s"]) / (units_p / p["peer"]["s"]) for p in both)
        ratio = median(pair_ratios)
        ar["pair_ratios"] = [round(r, 3) for r in pair_ratios]
        if units_p != units_a:
            print(f"run.py: {name}: attn does {units_a} {ar['unit']} units per iteration, {peer} {units_p}",
                  file=sys.stderr)
    else:
        pr = None
    probes = [p["attn"]["probe"] for p in pairs if "probe" in p["attn"]]
    if probes:
        # gemm_2048: each repeat's rate as a share of the FMA ceiling measured just before it.
        ar["fma_peak_gflops"] = ar["probe_median"] = median(probes)  # gemm: the FMA ceiling; gpt2: tokens/s
        ar["share_of_ceiling"] = median([units_a / p["attn"]["s"] / p["attn"]["probe"] for p in pairs])
        if pr:
            pr["share_of_ceiling"] = median([pr["units_per_iteration"] / p["peer"]["s"] / p["attn"]["probe"]
                                             for p in both])
    note = NOTES[name](ar, pr) if name in NOTES else ""
    if ratio is not None:
        q = ar["pair_ratios"]
        q1, q3 = quartiles(q)
        note = (note + "; " if note else "") + (f"{len(q)} pairs: ratio median {ratio:.2f}, "
                                                f"quartiles {q1:.2f}-{q3:.2f}, range {q[0]:.2f}-{q[-1]:.2f}")
    return {"workload": name, "peer": peer or "-", "attn": ar, "pytorch": pr, "ratio": ratio, "note": note}


def fmt_mib(side, key):
    v = side.get(key) if side else None
    return "-" if v is None or v != v else f"{v:.0f}"


def print_row(row):
    ar, pr = row["attn"], row["pytorch"]
    cells = [row["workload"], row["peer"], fmt(ar["value"]) if ar else "-", fmt(pr["value"] if pr else None),
             ar["unit"] if ar else "-", f"{row['ratio']:.2f}" if row["ratio"] else "-",
             fmt_mib(ar, "peak_rss_mib"), fmt_mib(ar, "peak_above_baseline_mib"),
             fmt_mib(pr, "peak_rss_mib"), fmt_mib(pr, "peak_above_baseline_mib"), row["note"]]
    print("\t".join(cells), flush=True)


def write_markdown(path, rows):
    with open(path, "w") as f:
        f.write("| workload | peer | attn | peer | unit | ratio | attn peak / above base (MiB) | "
                "peer peak / above base (MiB) | note |\n")
        f.write("|---|---|---:|---:|---|---:|---:|---:|---|\n")
        for r in rows:
            ar, pr = r["attn"], r["pytorch"]
            ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
            f.write(f"| {r['workload']} | {r['peer']} | {fmt(ar['value']) if ar else '-'} | "
                    f"{fmt(pr['value'] if pr else None)} | {ar['unit'] if ar else '-'} | {ratio} | "
                    f"{fmt_mib(ar, 'peak_rss_mib')} / {fmt_mib(ar, 'peak_above_baseline_mib')} | "
                    f"{fmt_mib(pr, 'peak_rss_mib')} / {fmt_mib(pr, 'peak_above_baseline_mib')} | {r['note']} |\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", help="subset to run (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build-dir", default=os.environ.get("ATTN_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--attn-bench", help="path of the attn_bench binary (default: <build-dir>/bench/attn_bench)")
    ap.add_argument("--build", action="store_true", help="(re)build attn_bench first")
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch for the PyTorch side")
    ap.add_argument("--no-peer", action="store_true", help="run attn only")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated peers to pair attn with (default: {','.join(PEERS)})")
    ap.add_argument("--markdown", help="also write the results as a Markdown table to this file")
    ap.add_argument("--json", help="also write the raw results as JSON to this file")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--compile-timeout", type=float, default=1800,
                    help="seconds a pytorch-compile process may take to compile and warm up (default 1800)")
    ap.add_argument("--pairs", type=int, default=6,
                    help="timed repeats per side and round, taken in pairs (one attn repeat, one PyTorch repeat, "
                         "alternating which goes first); the ratio is the median of all pairs' ratios (default 6)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="start both processes this many times per workload and pool the pairs of all rounds "
                         "(default 4: a process's speed can depend on how its memory was laid out, e.g. how many "
                         "page faults PyTorch's allocations take per iteration, and on whether it was started "
                         "first, so odd rounds start PyTorch first; an even count balances that)")
    ap.add_argument("--compile-rounds", type=int, default=2,
                    help="rounds against pytorch-compile (each recompiles in a fresh process; default 2)")
    a = ap.parse_args()

    exe = a.attn_bench or find_attn_bench(a.build_dir, a.build)
    available = subprocess.run([exe, "--list"], capture_output=True, text=True, check=True).stdout.split()
    available += busy_core.names(available)
    if dp_run.available(a.build_dir):
        available += dp_run.NAMES  # 2 processes under mpirun (bench/dp_run.py)
    available += ct2_run.NAMES  # a trained translator against CTranslate2 (bench/ct2_run.py)
    names = a.workloads or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"run.py: unknown workload(s) {', '.join(unknown)}; known: {' '.join(available)}", file=sys.stderr)
        return 2
    peers = [p for p in a.peers.split(",") if p]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        print(f"run.py: unknown peer(s) {', '.join(bad)}; known: {' '.join(PEERS)}", file=sys.stderr)
        return 2

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    if not a.no_peer and subprocess.run([a.python, "-c", "import torch"], capture_output=True).returncode != 0:
        print(f"run.py: {a.python} cannot import torch; PyTorch columns are '-'", file=sys.stderr)
        peers = []
    if a.no_peer or not peers:
        peers = [None]

    print("# workload\tpeer\tattn_value\tpeer_value\tunit\tratio\tattn_peak_MiB\tattn_above_base_MiB"
          "\tpeer_peak_MiB\tpeer_above_base_MiB\tnote", flush=True)
    rows = []
    failed = False
    for name in names:
        if name in dp_run.NAMES:
            try:
                for row in dp_run.rows(a.build_dir, a.python, timeout=a.timeout * 3):
                    rows.append(row)
                    print_row(row)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                print(f"run.py: {name}: {e}", file=sys.stderr)
                failed = True
            continue
        if name in ct2_run.NAMES:
            why = ct2_run.skip_reason(a.build_dir, a.python, ct2_run.model_dir())
            try:
                got = ([] if why else ct2_run.rows(a.build_dir, a.python, rounds=max(1, a.rounds // 2), names=[name]))
            except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
                print(f"run.py: {name}: {e}", file=sys.stderr)
                failed = True
                continue
            for row in got or [{"workload": name, "peer": "ctranslate2", "attn": None, "pytorch": None,
                                "ratio": None, "note": why}]:
                rows.append(row)
                print_row(row)
            continue
        busy = busy_core.base(name)  # greedy_decode_busy_core -> greedy_decode, run with one core kept busy
        for peer in peers:
            if busy and peer != "pytorch":
                continue  # the busy-core lines check attn's OpenMP waiting, against the eager peer only
            if peer == "pytorch-autocast-bf16" and not name.endswith("_bf16"):
                continue
            try:
                row = measure_workload(name, exe, peer, a, env)
            except PeerUnavailable as e:
                row = {"workload": name, "peer": peer, "attn": None, "pytorch": None, "ratio": None,
                       "note": f"not run: {e}"}
            if row is None:
                failed = True
                break
            rows.append(row)
            print_row(row)
        if busy:
            try:
                row = busy_core.attn_idle_row(name, [exe, busy, "--threads", str(a.threads)], env, a.timeout,
                                              a.rounds, a.pairs, Server, median, quartiles)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                print(f"run.py: {name} (attn-idle): {e}", file=sys.stderr)
                failed = True
                continue
            rows.append(row)
            print_row(row)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    if a.markdown:
        write_markdown(a.markdown, rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
