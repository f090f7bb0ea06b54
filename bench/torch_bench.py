#!/usr/bin/env python3
"""PyTorch's side of `make bench`: the twin of bench/attn_bench.cc (same workload names, shapes, units).

    python bench/torch_bench.py --list
    python bench/torch_bench.py gemm_2048 --threads 2     # prints one JSON object, like attn_bench
    python bench/torch_bench.py gemm_2048 --serve         # paired mode for run.py (see serve())
    python bench/torch_bench.py greedy_decode --compile   # the `pytorch-compile` peer (torch.compile, inductor)
    python bench/torch_bench.py greedy_decode --describe  # one untimed iteration: units, parameters (no timing)

The peer is PyTorch as a performance-minded user writes it (bench/README.md, "The peer"): fused Adam,
torch.inference_mode() for inference, a key/value cache in greedy decoding (CachedDecoder below, over
nn.Transformer's own layer modules), 2 threads; with --compile the model (training) or the decoding step
(decoding) also goes through torch.compile, and its compilation happens in the untimed warm-up.

Each workload returns a Job: a function that runs one iteration, and what one iteration is worth.
measure() runs warm-up iterations, then reports the median seconds per iteration over several
repeats (same policy as bench/bench_util.h). Memory: the process's resident set right after
`import torch` (nothing built yet) is its baseline; the summary prints the peak and the peak above it.
"""
import argparse
import json
import math
import os
import resource
import shutil
import sys
import time


def current_rss_mib():
    """VmRSS of this process in MiB (Linux), 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


import torch  # noqa: E402  (imported after the helpers so that the baseline below includes exactly torch)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_rnn_workloads as rnnw  # noqa: E402  (bench/: the recurrent and text-CNN workloads)

BASELINE_RSS_MIB = current_rss_mib()  # after `import torch`, before building anything

import hf_bench  # noqa: E402  (the Hugging Face model workloads and the onnxruntime peer)
from bench_job import Job, NotCompiled, count_parameters  # noqa: E402,F401  (check_peers.py uses tb.Job too)


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
    repeat per "run" line on stdin (printing {"s": seconds per iteration}) until "quit". A warm-up that
    fails (torch.compile cannot compile the step) prints {"ready": false, "unavailable": why} instead."""
    try:
        iters = warm_up_and_calibrate(job.fn, job.warmup)
    except Exception as e:  # noqa: BLE001  (any compiler failure; run.py prints the reason)
        print(json.dumps({"ready": False, "unavailable": f"warm-up failed: {type(e).__name__}: "
                                                         f"{str(e).strip()[:300]}"}), flush=True)
        return False
    print(json.dumps({"ready": True, "iters_per_repeat": iters}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            break
        out = {"s": time_repeat(job.fn, iters)} if line == "run" else {"error": "unknown command"}
        print(json.dumps(out), flush=True)
    return True


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


def compiler_missing():
    """Why inductor cannot generate CPU code here, or None: it compiles C++ with $CXX (default g++)."""
    cxx = os.environ.get("CXX", "g++")
    return None if shutil.which(cxx) else f"no C++ compiler ({cxx!r} not on PATH) for inductor's CPU code"


def maybe_compile(fn, compiled, **kwargs):
    """torch.compile(fn) (inductor, the default backend) for the pytorch-compile peer, else fn itself."""
    if not compiled:
        return fn
    why = compiler_missing()
    if why:
        raise NotCompiled(why)
    return torch.compile(fn, **kwargs)


def train_step(model, x, y, compiled=False):
    """forward, cross-entropy, backward, fused Adam (one multi-tensor kernel, as attn's), zero_grad.
    Compiled: the model's forward and backward go through torch.compile; Adam stays the fused kernel."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    forward = maybe_compile(model, compiled)

    def step():
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Job(step, "steps/s", extra={"parameters": count_parameters(model)})


def not_compiled(make):
    """Micro-benchmarks of one or two ATen kernels: only training steps and decoding get a compiled peer."""
    def build(compiled=False):
        if compiled:
            raise NotCompiled("kernel micro-benchmark: only training-step and decoding workloads have a "
                              "pytorch-compile peer")
        return make()
    return build


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


def gemm_2048_bf16():
    """bf16 @ bf16 -> bf16 (oneDNN / AMX inside PyTorch); attn's gemm_2048_bf16 does the same."""
    n = 2048
    a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
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


class CachedDecoder:
    """Incremental (key/value-cached) greedy decoding over a Translator's own nn.TransformerDecoderLayer
    modules: each step feeds only the newest token, appends its self-attention keys/values to per-layer
    buffers, and attends the encoder memory through keys/values projected once. It reuses the layers'
    submodules and weights (self_attn / multihead_attn in_proj + out_proj, norm1-3, linear1/2, activation,
    pre- or post-LN as the layer says) and the decoder's final norm, so it computes what
    model.decode(prefix) computes at the last position; eval mode only (no dropout).

        dec = CachedDecoder(model, src, max_steps=32)     # src (N, S) token ids; runs the encoder
        logits = dec.step(tokens, t)                       # tokens (N,) at position t -> (N, V)
    """

    def __init__(self, model, src, max_steps):
        self.model = model
        memory = model.encode(src)  # (N, S, E)
        n, s, _ = memory.shape
        pad = src == model.pad_id
        # (N, 1, 1, S) boolean, True = attend; None when nothing is padded (the faster SDPA path)
        self.memory_mask = ~pad[:, None, None, :] if bool(pad.any()) else None
        self.layers = list(model.transformer.decoder.layers)
        self.final_norm = model.transformer.decoder.norm
        self.cache = []
        for layer in self.layers:
            ca = layer.multihead_attn
            h, e = ca.num_heads, ca.embed_dim
            _, w_k, w_v = ca.in_proj_weight.chunk(3)
            _, b_k, b_v = ca.in_proj_bias.chunk(3)
            mem_k = F.linear(memory, w_k, b_k).view(n, s, h, e // h).transpose(1, 2)  # (N, H, S, D)
            mem_v = F.linear(memory, w_v, b_v).view(n, s, h, e // h).transpose(1, 2)
            # (N, H, T, D), filled step by step; in the projections' dtype (bf16 under autocast)
            self_k = mem_k.new_empty(n, h, max_steps, e // h)
            self_v = mem_v.new_empty(n, h, max_steps, e // h)
            self.cache.append((mem_k, mem_v, self_k, self_v))

    @staticmethod
    def _heads(x, h):  # (N, 1, E) -> (N, H, 1, D)
        return x.view(x.size(0), 1, h, -1).transpose(1, 2)

    @staticmethod
    def _merge(x):  # (N, H, 1, D) -> (N, 1, E)
        return x.transpose(1, 2).reshape(x.size(0), 1, -1)

    def _self_attention(self, layer, x, self_k, self_v, t):
        sa = layer.self_attn
        q, k, v = F.linear(x, sa.in_proj_weight, sa.in_proj_bias).chunk(3, dim=-1)  # (N, 1, E) each
        self_k[:, :, t:t + 1] = self._heads(k, sa.num_heads)
        self_v[:, :, t:t + 1] = self._heads(v, sa.num_heads)
        a = F.scaled_dot_product_attention(self._heads(q, sa.num_heads), self_k[:, :, :t + 1], self_v[:, :, :t + 1])
        return layer.dropout1(sa.out_proj(self._merge(a)))

    def _cross_attention(self, layer, x, mem_k, mem_v):
        ca = layer.multihead_attn
        w_q, b_q = ca.in_proj_weight.chunk(3)[0], ca.in_proj_bias.chunk(3)[0]
        q = self._heads(F.linear(x, w_q, b_q), ca.num_heads)
        a = F.scaled_dot_product_attention(q, mem_k, mem_v, attn_mask=self.memory_mask)
        return layer.dropout2(ca.out_proj(self._merge(a)))

    @staticmethod
    def _feed_forward(layer, x):
        return layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))

    def step(self, tokens, t):
        x = self.model.embed(tokens[:, None], start=t)  # (N, 1, E)
        for layer, (mem_k, mem_v, self_k, self_v) in zip(self.layers, self.cache):
            if layer.norm_first:
                x = x + self._self_attention(layer, layer.norm1(x), self_k, self_v, t)
                x = x + self._cross_attention(layer, layer.norm2(x), mem_k, mem_v)
                x = x + self._feed_forward(layer, layer.norm3(x))
            else:
                x = layer.norm1(x + self._self_attention(layer, x, self_k, self_v, t))
                x = layer.norm2(x + self._cross_attention(layer, x, mem_k, mem_v))
                x = layer.norm3(x + self._feed_forward(layer, x))
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.model.generator(x[:, 0])  # (N, V)


def greedy_cached(model, src, steps, step_fn=None):
    """`steps` greedy tokens per source row with the key/value cache -> (N, steps). step_fn(dec, tokens, t)
    replaces dec.step (the compiled peer passes a torch.compile'd one)."""
    dec = CachedDecoder(model, src, steps)
    tok = torch.full((src.size(0),), model.bos_id, dtype=torch.long)
    out = []
    for t in range(steps):
        tok = (step_fn(dec, tok, t) if step_fn else dec.step(tok, t)).argmax(-1)
        out.append(tok)
    return torch.stack(out, 1)


def greedy_uncached(model, src, steps):
    """The nn.Transformer tutorial's loop: encoder once, then the decoder re-run over the whole prefix
    (causal mask) at every step, argmax of the last position -> (N, steps). The reference of the cache."""
    memory = model.encode(src)
    ys = torch.full((src.size(0), 1), model.bos_id, dtype=torch.long)
    for _ in range(steps):
        out = model.decode(ys, memory, src)
        ys = torch.cat([ys, model.generator(out[:, -1]).argmax(-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def bench_translator():
    return Translator(vocab_size=8000, d_model=512, nhead=8, num_encoder_layers=3, num_decoder_layers=3,
                      dim_feedforward=2048, dropout=0.1, max_len=1024)


SENTENCES, SRC_LEN, TGT_LEN = 32, 32, 32


def transformer_train_step(compiled=False, autocast=False):
    """autocast: forward and loss under torch.autocast("cpu", dtype=torch.bfloat16) (the
    pytorch-autocast-bf16 peer of transformer_train_step_bf16)."""
    model = bench_translator()
    model.train()
    V = model.embedding.num_embeddings
    src = torch.randint(4, V, (SENTENCES, SRC_LEN))  # ids 0-3: pad/unk/bos/eos; no padding
    tgt_in = torch.randint(4, V, (SENTENCES, TGT_LEN))
    tgt_out = torch.randint(4, V, (SENTENCES, TGT_LEN))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)
    forward = maybe_compile(model, compiled)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = forward(src, tgt_in)
            loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=model.pad_id,
                                   label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return Job(step, "tokens/s", units=src.numel() + tgt_in.numel(), warmup=2, repeats=5,
               extra={"parameters": count_parameters(model)})


def decode_bench_model():
    """The bench translator in eval mode with EOS biased to -1e9 (as on attn's side: no sentence ends
    early, so every run makes exactly TGT_LEN steps) and its SENTENCES x SRC_LEN random source ids."""
    model = bench_translator()
    model.eval()
    with torch.no_grad():
        model.generator.bias[model.eos_id] = -1e9
    src = torch.randint(4, model.embedding.num_embeddings, (SENTENCES, SRC_LEN))
    return model, src


def greedy_decode(compiled=False, bf16=False):
    """32 greedy tokens for 32 sources with the key/value-cached loop under torch.inference_mode().
    Compiled: the per-token step (all decoder layers + generator) goes through torch.compile with dynamic
    shapes (the attended prefix grows by one each step); the encoder stays eager (run once per batch).
    bf16 (greedy_decode_bf16): `pytorch` converts the model with model.to(torch.bfloat16) (pure bf16
    inference, no casts at run time); `pytorch-autocast-bf16` runs the float32 model under torch.autocast."""
    model, src = decode_bench_model()
    autocast = bf16 and AUTOCAST_PEER[0]
    if bf16 and not autocast:
        model = model.to(torch.bfloat16)
    if autocast:  # the encoder layers' inference fast path (_transformer_encoder_layer_fwd) refuses autocast's mix
        torch.backends.mha.set_fastpath_enabled(False)
    step_fn = maybe_compile(lambda dec, tok, t: dec.step(tok, t), compiled, dynamic=True)
    generated = [0]

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ys = greedy_cached(model, src, TGT_LEN, step_fn)
        generated[0] = ys.numel()

    def check():
        if generated[0] != SENTENCES * TGT_LEN:
            raise RuntimeError(f"greedy_decode: {generated[0]} tokens generated, expected {SENTENCES * TGT_LEN}")
    return Job(run, "tokens/s", units=SENTENCES * TGT_LEN, warmup=2, repeats=5, check=check,
               extra={"parameters": count_parameters(model)})


WORKLOADS = {
    "gemm_2048": not_compiled(gemm_2048),
    "gemm_2048_bf16": not_compiled(gemm_2048_bf16),
    "mlp_train_step": lambda compiled=False: train_step(mlp(), torch.randn(128, 1, 28, 28),
                                                        torch.randint(0, 10, (128,)), compiled),
    "cnn_train_step": lambda compiled=False: train_step(cnn(), torch.randn(64, 1, 28, 28),
                                                        torch.randint(0, 10, (64,)), compiled),
    "softmax_fwd_bwd": not_compiled(lambda: fwd_bwd(lambda x: torch.softmax(x, -1))),
    "layer_norm_fwd_bwd": not_compiled(layer_norm_fwd_bwd),
    "gelu_fwd_bwd": not_compiled(lambda: fwd_bwd(F.gelu)),
    "transformer_train_step": transformer_train_step,
    # attn under its Autocast; peers: `pytorch` (fp32), `pytorch-autocast-bf16` (AUTOCAST_PEER below)
    "transformer_train_step_bf16": lambda compiled=False: transformer_train_step(compiled, autocast=AUTOCAST_PEER[0]),
    "greedy_decode": greedy_decode,
    # attn: the model converted to bf16; peers: `pytorch` (the model in bf16), `pytorch-autocast-bf16`
    "greedy_decode_bf16": lambda compiled=False: greedy_decode(compiled, bf16=True),
    "minilm_embed": hf_bench.minilm_embed,
    "minilm_finetune_step": hf_bench.minilm_finetune_step,
    # attn under its Autocast; peers: `pytorch` (fp32), `pytorch-autocast-bf16`
    "minilm_embed_bf16": lambda compiled=False: hf_bench.minilm_embed(compiled, autocast=AUTOCAST_PEER[0]),
    "minilm_finetune_step_bf16": lambda compiled=False: hf_bench.minilm_finetune_step(compiled,
                                                                                      autocast=AUTOCAST_PEER[0]),
    "gpt2_generate": hf_bench.gpt2_generate,
    "lstm_lm_train_step": lambda compiled=False: rnnw.char_lm_train_step(Job, count_parameters, maybe_compile, "lstm", compiled),
    "gru_lm_train_step": lambda compiled=False: rnnw.char_lm_train_step(Job, count_parameters, maybe_compile, "gru", compiled),
    # attn under its Autocast; peers: `pytorch` (fp32), `pytorch-autocast-bf16`
    "lstm_lm_train_step_bf16": lambda compiled=False: rnnw.char_lm_train_step(
        Job, count_parameters, maybe_compile, "lstm", compiled, autocast=AUTOCAST_PEER[0]),
    "gru_lm_train_step_bf16": lambda compiled=False: rnnw.char_lm_train_step(
        Job, count_parameters, maybe_compile, "gru", compiled, autocast=AUTOCAST_PEER[0]),
    "lstm_sample": not_compiled(lambda: rnnw.lstm_sample(Job, count_parameters)),
    "textcnn_train_step": lambda compiled=False: rnnw.textcnn_train_step(Job, count_parameters, maybe_compile, compiled),
}


# The pytorch-autocast-bf16 peer (--autocast-bf16): the workloads that run under torch.autocast then.
AUTOCAST_WORKLOADS = ("transformer_train_step_bf16", "lstm_lm_train_step_bf16", "gru_lm_train_step_bf16",
                      "greedy_decode_bf16", "minilm_embed_bf16", "minilm_finetune_step_bf16")
AUTOCAST_PEER = [False]


def memory_fields():
    """Peak RSS (getrusage high-water mark) and the peak above the baseline taken after `import torch`."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {"peak_rss_mib": peak, "baseline_rss_mib": BASELINE_RSS_MIB,
            "peak_above_baseline_mib": max(0.0, peak - BASELINE_RSS_MIB)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", nargs="?")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--serve", action="store_true", help="paired mode for run.py")
    ap.add_argument("--compile", action="store_true", help="the pytorch-compile peer (torch.compile, inductor)")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="the pytorch-autocast-bf16 peer (torch.autocast(\"cpu\", dtype=torch.bfloat16))")
    ap.add_argument("--onnxruntime", action="store_true", help="the onnxruntime peer (bench/hf_bench.py)")
    ap.add_argument("--describe", action="store_true",
                    help="run one untimed iteration and print units, unit and parameters (bench/check_peers.py)")
    a = ap.parse_args()
    if a.list:
        print("\n".join(WORKLOADS))
        return 0
    if a.workload not in WORKLOADS:
        print(f"torch_bench: unknown workload {a.workload!r} (--list shows them)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    peer = ("onnxruntime" if a.onnxruntime else "pytorch-compile" if a.compile
            else "pytorch-autocast-bf16" if a.autocast_bf16 else "pytorch")
    result = {"workload": a.workload, "peer": peer}
    if a.autocast_bf16 and a.workload not in AUTOCAST_WORKLOADS:
        print(json.dumps({**result, "ready": False, "unavailable": "no autocast form of this workload"}), flush=True)
        return 0
    AUTOCAST_PEER[0] = a.autocast_bf16
    try:
        job = (hf_bench.onnxruntime_workload(a.workload, a.threads) if a.onnxruntime
               else WORKLOADS[a.workload](compiled=a.compile))
    except NotCompiled as e:
        print(json.dumps({**result, "ready": False, "unavailable": str(e)}), flush=True)
        return 0
    if a.describe:
        job.fn()
    elif a.serve:  # run.py computes the throughputs from the repeats' times
        if not serve(job):
            return 0
    else:
        timing = measure(job.fn, warmup=job.warmup, repeats=job.repeats)
        result.update(value=job.units / timing["median_s"], **timing)
    if job.check:
        job.check()
    print(json.dumps({**result, "unit": job.unit, "units_per_iteration": job.units,
                      "threads": torch.get_num_threads(), **memory_fields(), "torch": torch.__version__,
                      **job.extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
