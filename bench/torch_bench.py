#!/usr/bin/env python3
"""PyTorch's side of `make bench`: the twin of bench/attn_bench.cc (same workload names, shapes, units).

    python bench/torch_bench.py --list
    python bench/torch_bench.py gemm_2048 --threads 2     # prints one JSON object, like attn_bench
    python bench/torch_bench.py gemm_2048 --serve         # paired mode for run.py (see serve())

Each workload returns a Job: a function that runs one iteration, and what one iteration is worth.
measure() runs warm-up iterations, then reports the median seconds per iteration over several
repeats (same policy as bench/bench_util.h).
"""
import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Job:
    """One workload, built: fn() runs one iteration; throughput = units / seconds per iteration."""

    def __init__(self, fn, unit, units=1.0, warmup=3, repeats=7, extra=None):
        self.fn, self.unit, self.units, self.warmup, self.repeats = fn, unit, units, warmup, repeats
        self.extra = extra or {}


def warm_up_and_calibrate(fn, warmup, min_repeat_seconds=0.25):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    return max(1, min(int(min_repeat_seconds / one), 1 << 20))


def time_repeat(fn, iters):
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def serve(job):
    """Paired mode, the twin of bench_util.h's serve(): warm up, print {"ready": true}, then time one
    repeat per "run" line on stdin (printing {"s": seconds per iteration}) until "quit"."""
    iters = warm_up_and_calibrate(job.fn, job.warmup)
    print(json.dumps({"ready": True, "iters_per_repeat": iters}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            break
        out = {"s": time_repeat(job.fn, iters)} if line == "run" else {"error": "unknown command"}
        print(json.dumps(out), flush=True)


def measure(fn, warmup=3, repeats=7, min_repeat_seconds=0.25):
    iters = warm_up_and_calibrate(fn, warmup, min_repeat_seconds)
    per_iter = sorted(time_repeat(fn, iters) for _ in range(repeats))
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
    return Job(step, "steps/s")


def fwd_bwd(op):
    x = torch.randn(64 * 128, 512, requires_grad=True)  # (B * T, C)
    g = torch.randn(64 * 128, 512)

    def it():
        x.grad = None
        op(x).backward(g)
    return Job(it, "it/s")


def gemm_2048():
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    return Job(lambda: torch.matmul(a, b), "GFLOP/s", units=2.0 * n ** 3 / 1e9, warmup=2)


def layer_norm_fwd_bwd():
    w = torch.ones(512, requires_grad=True)
    b = torch.zeros(512, requires_grad=True)

    def op(x):
        w.grad = None
        b.grad = None
        return F.layer_norm(x, (512,), w, b)
    return fwd_bwd(op)


# ---- the translator (attn's models::Translator, built the way PyTorch users build it)
class PositionalEncoding(nn.Module):
    """Sinusoidal positions (sin at even, cos at odd features) added to (N, T, E), then dropout."""

    def __init__(self, d_model, dropout=0.1, max_len=1024):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe.float(), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, start=0):
        return self.dropout(x + self.pe[start:start + x.size(1)])


class Translator(nn.Module):
    """Shared source/target embedding * sqrt(d), sinusoidal PE, post-LN nn.Transformer (batch_first),
    generator Linear whose weight is the embedding matrix (+ its own bias) — attn's models::Translator."""

    def __init__(self, vocab_size=8000, d_model=512, nhead=8, num_encoder_layers=3, num_decoder_layers=3,
                 dim_feedforward=2048, dropout=0.1, max_len=1024, pad_id=0, bos_id=2, eos_id=3):
        super().__init__()
        self.d_model, self.pad_id, self.bos_id, self.eos_id = d_model, pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.positional = PositionalEncoding(d_model, dropout, max_len)
        # nn.Transformer initialises its own parameters (xavier_uniform_ on every matrix), as attn's does.
        self.transformer = nn.Transformer(d_model=d_model, nhead=nhead, num_encoder_layers=num_encoder_layers,
                                          num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
                                          dropout=dropout, batch_first=True)
        self.generator = nn.Linear(d_model, vocab_size)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, 0.0, d_model ** -0.5)
            self.embedding.weight[pad_id].zero_()
            self.generator.bias.zero_()
        self.generator.weight = self.embedding.weight  # tied

    def embed(self, tokens, start=0):
        return self.positional(self.embedding(tokens) * math.sqrt(self.d_model), start)

    def encode(self, src):
        return self.transformer.encoder(self.embed(src), src_key_padding_mask=src == self.pad_id)

    def decode(self, tgt_in, memory, src):
        t = tgt_in.size(1)
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.transformer.decoder(self.embed(tgt_in), memory, tgt_mask=mask, tgt_is_causal=True,
                                        memory_key_padding_mask=src == self.pad_id)

    def forward(self, src, tgt_in):
        return self.generator(self.decode(tgt_in, self.encode(src), src))


def bench_translator():
    return Translator(vocab_size=8000, d_model=512, nhead=8, num_encoder_layers=3, num_decoder_layers=3,
                      dim_feedforward=2048, dropout=0.1, max_len=1024)


SENTENCES, SRC_LEN, TGT_LEN = 32, 32, 32


def transformer_train_step():
    model = bench_translator()
    model.train()
    V = model.embedding.num_embeddings
    src = torch.randint(4, V, (SENTENCES, SRC_LEN))  # ids 0-3: pad/unk/bos/eos; no padding
    tgt_in = torch.randint(4, V, (SENTENCES, TGT_LEN))
    tgt_out = torch.randint(4, V, (SENTENCES, TGT_LEN))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)

    def step():
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=model.pad_id,
                               label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad()
    params = sum(p.numel() for p in model.parameters())
    return Job(step, "tokens/s", units=SENTENCES * (SRC_LEN + TGT_LEN), warmup=2, repeats=5,
               extra={"parameters": params})


def greedy_decode():
    """The nn.Transformer users' greedy loop: encoder once, then the decoder re-run over the whole prefix
    (causal mask) at every step, argmax of the last position. EOS gets a -1e9 bias, as on attn's side,
    so every run makes exactly 32 steps."""
    model = bench_translator()
    model.eval()
    with torch.no_grad():
        model.generator.bias[model.eos_id] = -1e9
    src = torch.randint(4, model.embedding.num_embeddings, (SENTENCES, SRC_LEN))

    def run():
        with torch.inference_mode():
            memory = model.encode(src)
            ys = torch.full((SENTENCES, 1), model.bos_id, dtype=torch.long)
            for _ in range(TGT_LEN):
                out = model.decode(ys, memory, src)
                next_tok = model.generator(out[:, -1]).argmax(-1)
                ys = torch.cat([ys, next_tok.unsqueeze(1)], dim=1)
        assert ys.size(1) == TGT_LEN + 1
    params = sum(p.numel() for p in model.parameters())
    return Job(run, "tokens/s", units=SENTENCES * TGT_LEN, warmup=2, repeats=5, extra={"parameters": params})


WORKLOADS = {
    "gemm_2048": gemm_2048,
    "mlp_train_step": lambda: train_step(mlp(), torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))),
    "cnn_train_step": lambda: train_step(cnn(), torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))),
    "softmax_fwd_bwd": lambda: fwd_bwd(lambda x: torch.softmax(x, -1)),
    "layer_norm_fwd_bwd": layer_norm_fwd_bwd,
    "gelu_fwd_bwd": lambda: fwd_bwd(F.gelu),
    "transformer_train_step": transformer_train_step,
    "greedy_decode": greedy_decode,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--serve", action="store_true", help="paired mode for run.py")
    a = ap.parse_args()
    if a.list:
        print("\n".join(WORKLOADS))
        return 0
    if a.workload not in WORKLOADS:
        print(f"torch_bench: unknown workload {a.workload!r} (--list shows them)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    job = WORKLOADS[a.workload]()
    result = {"workload": a.workload}
    if a.serve:  # run.py computes the throughputs from the repeats' times
        serve(job)
    else:
        timing = measure(job.fn, warmup=job.warmup, repeats=job.repeats)
        result.update(value=job.units / timing["median_s"], **timing)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({**result, "unit": job.unit, "units_per_iteration": job.units,
                      "threads": torch.get_num_threads(), "peak_rss_mib": rss_mib, "torch": torch.__version__,
                      **job.extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
