#!/usr/bin/env python3
"""The bench test (ctest `BenchPeers`, run by `make test`; no timing): is the PyTorch peer honest and
does it do the same work as attn?

    python bench/check_peers.py --attn-bench build/bench/attn_bench     # with the venv's python

1. The key/value-cached greedy loop of torch_bench.py (CachedDecoder, the `pytorch` peer's decoder)
   gives exactly the tokens of the uncached loop (the decoder re-run over the whole prefix): on the
   benchmark's own model (its first 8 sources, 32 tokens each: the uncached loop is slow), and on a small model with padded sources (the cross-
   attention mask) in both post-LN and pre-LN form, for more steps than the cache's first growth.
2. For every workload attn_bench lists, one untimed iteration on each side (`attn_bench --describe`;
   torch_bench.py's workload run once in this process) reports the same unit, the same units per
   iteration (tokens, GFLOP, steps) and the same parameter count.

Exits non-zero on any mismatch, and when torch cannot be imported (this is a test, not a skip).
"""
import argparse
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import torch
except ImportError as e:
    sys.exit(f"check_peers: cannot import torch with {sys.executable} ({e}); run `make venv` "
             f"(scripts/setup-venv.sh) and configure with -DATTN_VENV=<venv>")

# nn.TransformerEncoder's inference fast path turns padded batches into nested tensors and says so
warnings.filterwarnings("ignore", message=".*nested tensors is in prototype stage.*")
sys.path.insert(0, HERE)
import torch_bench as tb  # noqa: E402


def check_cached_decoding():
    """Returns a list of failure messages (empty: the cached loop matches the uncached one)."""
    failures = []
    torch.manual_seed(0)
    model, src = tb.decode_bench_model()
    src = src[:8]
    with torch.inference_mode():
        cached = tb.greedy_cached(model, src, tb.TGT_LEN)
        uncached = tb.greedy_uncached(model, src, tb.TGT_LEN)
    if cached.shape != (8, tb.TGT_LEN) or not torch.equal(cached, uncached):
        failures.append(f"bench model: cached loop differs from uncached in "
                        f"{int((cached != uncached).sum())} of {uncached.numel()} tokens")
    for norm_first in (False, True):
        torch.manual_seed(1)
        small = tb.Translator(vocab_size=300, d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                              dim_feedforward=128, dropout=0.1, max_len=128)
        for layer in list(small.transformer.encoder.layers) + list(small.transformer.decoder.layers):
            layer.norm_first = norm_first  # read by forward(): the same weights as a pre-LN stack
        small.eval()
        src = torch.randint(4, 300, (6, 11))
        src[1, 7:] = small.pad_id  # padded sources: cross-attention must ignore the padding
        src[4, 3:] = small.pad_id
        steps = 40
        with torch.inference_mode():
            cached = tb.greedy_cached(small, src, steps)
            uncached = tb.greedy_uncached(small, src, steps)
        if not torch.equal(cached, uncached):
            failures.append(f"small {'pre' if norm_first else 'post'}-LN model with padding: cached loop differs "
                            f"in {int((cached != uncached).sum())} of {uncached.numel()} tokens")
    return failures


def describe_attn(attn_bench, name, threads):
    r = subprocess.run([attn_bench, name, "--describe", "--threads", str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"attn_bench {name} --describe failed ({r.returncode}): {r.stderr.strip()[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def describe_torch(name):
    """torch_bench.py's --describe, in this process (one `import torch` for all workloads)."""
    torch.manual_seed(0)
    job = tb.WORKLOADS[name]()
    job.fn()
    if job.check:
        job.check()
    return {"unit": job.unit, "units_per_iteration": job.units, **job.extra}


def check_same_work(attn_bench, threads):
    failures = []
    names = subprocess.run([attn_bench, "--list"], capture_output=True, text=True, check=True).stdout.split()
    missing = [n for n in names if n not in tb.WORKLOADS]
    if missing:
        failures.append(f"torch_bench.py has no twin of {', '.join(missing)}")
    for name in names:
        if name in missing:
            continue
        a = describe_attn(attn_bench, name, threads)
        p = describe_torch(name)
        for key in ("unit", "units_per_iteration", "parameters"):
            if a.get(key) != p.get(key):
                failures.append(f"{name}: {key} attn {a.get(key)!r}, pytorch {p.get(key)!r}")
        if not a.get("peak_rss_mib", 0) > 0 or "peak_above_baseline_mib" not in a:
            failures.append(f"{name}: attn reports no peak memory above baseline: {a}")
        print(f"{name}: {a.get('units_per_iteration')} {a.get('unit')} units, "
              f"{a.get('parameters', '-')} parameters on both sides", flush=True)
    mem = tb.memory_fields()
    if not mem["peak_above_baseline_mib"] > 0:
        failures.append(f"torch_bench reports no peak memory above baseline: {mem}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attn-bench", required=True, help="the attn_bench binary")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per side (default 1: no timing here, and one thread keeps the test fast on a "
                         "busy host, where 2-thread PyTorch slows down many times over)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    failures = check_cached_decoding()
    print("cached decoding: " + ("MISMATCH" if failures else "same tokens as the uncached loop"), flush=True)
    failures += check_same_work(a.attn_bench, a.threads)
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
