#!/usr/bin/env python3
"""PyTorch reference for `attn train-translator`: the same recipe, step for step, in plain PyTorch.

    python bench/torch_translator.py --spm runs/compare/attn/spm.model --train data/bible/train \\
        --dev data/bible/test --out runs/compare/torch --threads 1 --time-budget 3600

It re-implements src/train/translation.cc (and the pieces it uses) so that the two can be compared at
the same step count and the same training time (bench/compare_translation.py runs both):

- tokenizer: the SentencePiece model FILE of the attn run (--spm; both sides then use identical ids);
- data: data::ParallelCorpus (std::getline lines, blank pairs dropped, pairs with more than max_len - 1
  pieces on either side dropped) and data::TokenBatcher (Philox-4x32 Fisher-Yates permutation per epoch,
  buckets of 4096 pairs sorted by (max(src, tgt) length, src length), greedy cuts under max_tokens padded
  source + target tokens, shuffled batch order): the same batches in the same order as attn;
- model: models::Translator (torch_bench.Translator: shared embedding N(0, d^-1/2) with a zero padding row,
  x sqrt(d), sinusoidal positions + dropout, post-LN nn.Transformer with its own xavier init, output
  projection tied to the embedding + zero-initialised bias); masks: source key padding (encoder and
  cross-attention) and the causal target mask, as attn's Translator::forward;
- optimisation: Adam(betas 0.9/0.98, eps 1e-9, fused=True: the peer of bench/README.md), lr = factor * d^-0.5 * min(s^-0.5, s * warmup^-1.5) set
  before step s, cross-entropy with label smoothing and ignore_index = pad (mean over target tokens),
  clip_grad_norm_, step, zero_grad;
- validation every --eval-every steps and at the last step (as attn): teacher-forced loss (no smoothing) on
  the whole --dev set in TokenBatcher batches, then greedy BLEU/chrF (sacrebleu, 13a) on its first
  --eval-sentences kept pairs: sources are the pieces decoded back to text and re-encoded, truncated to
  max_len - 1 pieces + EOS, sorted by length, 64 per batch, at most int(1.5 * S) + 10 tokens (S = longest
  source of the batch incl. EOS, capped by the positional table), stop when every row has produced EOS.
  Decoding uses torch_bench.CachedDecoder, a key/value cache over nn.Transformer's own decoder layers
  (the same argmax sequence as re-running the decoder over the prefix); evaluation time is not
  training time. The last weights are saved to <out>/final.pt; --test-checkpoint scores a checkpoint
  (attn's or final.pt) on another set, e.g. the test books, with this same decoder.

Not reproduced: attn's random numbers (initial weights and dropout masks differ; the distributions are
the same), checkpoints/resume, the TensorBoard file and early stopping by default (--patience works as
attn's). metrics.jsonl uses attn's tags: train/loss, train/lr, train/tokens_per_s, train/seconds (time
in training steps only: batch collation, forward, backward, clipping, Adam; no setup, validation or
logging), dev/loss, dev/bleu, dev/chrf, each line with "step" and "wall_time".
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import sacrebleu
import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import CachedDecoder, Translator  # noqa: E402  (the modules the benchmarks use)

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF


# ---- data (include/attn/data/parallel_text.h)
def read_lines(path):
    """std::getline over the file's bytes, one trailing '\\r' stripped (data::read_lines)."""
    with open(path, "rb") as f:
        parts = f.read().split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return [(p[:-1] if p.endswith(b"\r") else p).decode("utf-8") for p in parts]


def blank(s):
    return s.strip(" \t\r\n") == ""


class Corpus:
    def __init__(self, src_lines, tgt_lines, sp, max_len):
        if len(src_lines) != len(tgt_lines):
            raise ValueError(f"parallel text: {len(src_lines)} source lines but {len(tgt_lines)} target lines")
        self.src, self.tgt, self.line = [], [], []
        self.dropped_empty = self.dropped_long = 0
        for i, (s, t) in enumerate(zip(src_lines, tgt_lines)):
            if blank(s) or blank(t):
                self.dropped_empty += 1
                continue
            si, ti = sp.encode(s), sp.encode(t)
            if len(si) + 1 > max_len or len(ti) + 1 > max_len:
                self.dropped_long += 1
                continue
            self.src.append(si)
            self.tgt.append(ti)
            self.line.append(i + 1)

    @staticmethod
    def load(src_path, tgt_path, sp, max_len):
        return Corpus(read_lines(src_path), read_lines(tgt_path), sp, max_len)

    def __len__(self):
        return len(self.src)


def philox4x32(seed, counters):
    """Philox 4x32-10 of attn/random.h for key `seed` and an array of uint64 counters -> 4 uint32 arrays."""
    c = np.asarray(counters, dtype=np.uint64)
    c0, c1 = c & np.uint64(MASK32), c >> np.uint64(32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    m0, m1, s32 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint64(32)
    for _ in range(10):
        p0, p1 = m0 * c0, m1 * c2  # < 2^64: no overflow
        n0 = (p1 >> s32) ^ c1 ^ np.uint64(k0)
        n2 = (p0 >> s32) ^ c3 ^ np.uint64(k1)
        c1, c3 = p1 & np.uint64(MASK32), p0 & np.uint64(MASK32)
        c0, c2 = n0, n2
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def philox_shuffle(v, seed, stream):
    """TokenBatcher's Fisher-Yates: for i = n-1 .. 1 swap v[i] with v[x % (i + 1)], x from Philox(seed^.., i)."""
    n = len(v)
    if n < 2:
        return
    key = (seed ^ ((stream * 0x9E3779B97F4A7C15) & MASK64)) & MASK64
    idx = np.arange(n, dtype=np.uint64)
    r0, r1, _, _ = philox4x32(key, idx)
    x = (r0 << np.uint64(32)) | r1
    j = (x % (idx + np.uint64(1))).tolist()
    for i in range(n - 1, 0, -1):
        k = j[i]
        v[i], v[k] = v[k], v[i]


class TokenBatcher:
    def __init__(self, corpus, max_tokens, shuffle, seed, bucket_size=4096, pad_id=0, bos_id=2, eos_id=3):
        if len(corpus) == 0:
            raise ValueError("TokenBatcher: the corpus is empty")
        self.c, self.max_tokens, self.shuffle, self.seed, self.bucket_size = corpus, max_tokens, shuffle, seed, bucket_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self._epoch, self._batches = -1, []

    def plan(self, epoch):
        if epoch == self._epoch:
            return self._batches
        c, n = self.c, len(self.c)
        order = list(range(n))
        if self.shuffle:
            philox_shuffle(order, self.seed, 2 * epoch + 1)
        batches = []
        for b in range(0, n, self.bucket_size):
            bucket = sorted(order[b:b + self.bucket_size],
                            key=lambda x: (max(len(c.src[x]), len(c.tgt[x])), len(c.src[x])))  # stable, as std::stable_sort
            cur, max_s, max_t = [], 0, 0
            for i in bucket:
                s, t = len(c.src[i]) + 1, len(c.tgt[i]) + 1
                ns, nt = max(max_s, s), max(max_t, t)
                if cur and (len(cur) + 1) * (ns + nt) > self.max_tokens:
                    batches.append(cur)
                    cur = []
                    ns, nt = s, t
                cur.append(i)
                max_s, max_t = ns, nt
            if cur:
                batches.append(cur)
        if self.shuffle:
            philox_shuffle(batches, self.seed, 2 * epoch + 2)
        self._epoch, self._batches = epoch, batches
        return batches

    def num_batches(self, epoch):
        return len(self.plan(epoch))

    def get(self, epoch, index):
        return self.collate(self.plan(epoch)[index])

    def collate(self, idx):
        c = self.c
        S = max(len(c.src[i]) for i in idx) + 1
        T = max(len(c.tgt[i]) for i in idx) + 1
        src = torch.full((len(idx), S), self.pad_id, dtype=torch.long)
        tin = torch.full((len(idx), T), self.pad_id, dtype=torch.long)
        tout = torch.full((len(idx), T), self.pad_id, dtype=torch.long)
        src_tokens = tgt_tokens = 0
        for r, i in enumerate(idx):
            s, t = c.src[i], c.tgt[i]
            src[r, :len(s)] = torch.tensor(s, dtype=torch.long)
            src[r, len(s)] = self.eos_id
            tin[r, 0] = self.bos_id
            tin[r, 1:len(t) + 1] = torch.tensor(t, dtype=torch.long)
            tout[r, :len(t)] = torch.tensor(t, dtype=torch.long)
            tout[r, len(t)] = self.eos_id
            src_tokens += len(s) + 1
            tgt_tokens += len(t) + 1
        return {"src": src, "tgt_in": tin, "tgt_out": tout, "src_tokens": src_tokens, "tgt_tokens": tgt_tokens,
                "indices": idx}


# ---- schedule and evaluation (src/train/translation.cc)
def noam(step, d_model, warmup, factor):
    s = float(max(step, 1))
    return factor * d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)


def sp_decode(sp, ids):
    """text::SentencePiece::decode: pad/bos/eos skipped."""
    return sp.decode([i for i in ids if i not in (sp.pad_id(), sp.bos_id(), sp.eos_id())])


@torch.inference_mode()
def greedy_translate(model, sp, lines, max_pos, batch_size=64, max_len_a=1.5, max_len_b=10):
    """TranslationSession::translate with beam_size 1, decoded with torch_bench.CachedDecoder (a key/value
    cache over nn.Transformer's own decoder layers; the same argmax sequence as re-running the decoder
    over the prefix, bench/check_peers.py checks it)."""
    out = [""] * len(lines)
    src, order = [None] * len(lines), []
    for i, line in enumerate(lines):
        if blank(line):
            continue
        ids = sp.encode(line)[:max_pos - 1] + [model.eos_id]
        src[i] = ids
        order.append(i)
    order.sort(key=lambda i: len(src[i]))  # stable
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        N, S = len(rows), max(len(src[i]) for i in rows)
        x = torch.full((N, S), model.pad_id, dtype=torch.long)
        for r, i in enumerate(rows):
            x[r, :len(src[i])] = torch.tensor(src[i], dtype=torch.long)
        max_len = min(int(max_len_a * S) + max_len_b, max_pos)
        dec = CachedDecoder(model, x, max_len)
        tok = torch.full((N,), model.bos_id, dtype=torch.long)
        done = torch.zeros(N, dtype=torch.bool)
        hyp = [[] for _ in range(N)]
        for t in range(max_len):
            best = dec.step(tok, t).argmax(-1)
            best = torch.where(done, torch.full_like(best, model.eos_id), best)
            for r, tok_r in enumerate(best.tolist()):
                if not done[r] and tok_r != model.eos_id:
                    hyp[r].append(tok_r)
            done |= best == model.eos_id
            tok = best
            if bool(done.all()):
                break
        for r, i in enumerate(rows):
            out[i] = sp_decode(sp, hyp[r])
    return out


def evaluate(model, sp, dev, dev_refs, sentences, max_tokens, max_pos):
    model.eval()
    total = count = 0.0
    batcher = TokenBatcher(dev, max_tokens, shuffle=False, seed=0, pad_id=model.pad_id, bos_id=model.bos_id,
                           eos_id=model.eos_id)
    with torch.inference_mode():
        for b in range(batcher.num_batches(0)):
            batch = batcher.get(0, b)
            logits = model(batch["src"], batch["tgt_in"])
            total += F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=model.pad_id,
                                     reduction="sum").item()
            count += batch["tgt_tokens"]
    # the pairs attn's evaluation scores (src/train/translation.cc): n evenly spaced over the whole set
    n = min(sentences, len(dev)) if sentences > 0 else len(dev)
    picked = [k * len(dev) // n for k in range(n)]
    src_lines = [sp_decode(sp, dev.src[i]) for i in picked]
    refs = [dev_refs[dev.line[i] - 1] for i in picked]
    hyps = greedy_translate(model, sp, src_lines, max_pos)
    model.train()
    return {"loss": total / count if count else 0.0, "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score, "hyps": hyps, "refs": refs}


class Metrics:
    def __init__(self, path):
        self.f = open(path, "a")

    def log(self, step, scalars):
        self.f.write(json.dumps({"step": step, "wall_time": time.time(), **scalars}) + "\n")
        self.f.flush()


def load_checkpoint(model, path):
    """Loads an attn checkpoint (train-translator's *.safetensors: "model." keys, output_bias) or this
    script's final.pt into the model; returns the step it was saved at (None if unknown)."""
    if path.endswith(".pt"):
        saved = torch.load(path, map_location="cpu")
        model.load_state_dict(saved["model"], strict=True)
        return saved.get("step")
    from safetensors import safe_open
    from safetensors.torch import load_file
    raw = load_file(path)
    state = {k[len("model."):]: v for k, v in raw.items() if k.startswith("model.")}
    state["generator.bias"] = state.pop("output_bias")
    state["generator.weight"] = state["embedding.weight"]  # tied
    model.load_state_dict(state, strict=True)
    with safe_open(path, framework="pt") as f:
        return (f.metadata() or {}).get("attn.step")


def evaluate_checkpoint(a, model, sp, dev, dev_refs, max_pos, path, tag):
    """No training: validate the weights in `path` exactly as during training (loss on the whole --dev
    set, greedy BLEU/chrF on --eval-sentences pairs evenly spaced over it as attn picks them, all when 0), write <out>/<tag>.hyp/.ref and
    print the scores as JSON. compare_translation.py uses it twice: --check-attn-checkpoint (attn's weights
    through this code must give attn's logged scores) and --test-checkpoint (the test books decoded once,
    at the end, by this same decoder for both sides' final weights)."""
    step = load_checkpoint(model, path)
    t = time.perf_counter()
    ev = evaluate(model, sp, dev, dev_refs, a.eval_sentences, a.max_tokens, max_pos)
    hyp_path = os.path.join(a.out, f"{tag}.hyp.{a.tgt}")
    with open(hyp_path, "w") as f:
        f.write("".join(h + "\n" for h in ev["hyps"]))
    ref_path = os.path.join(a.out, f"{tag}.ref.{a.tgt}")
    with open(ref_path, "w") as f:
        f.write("".join(r + "\n" for r in ev["refs"]))
    print(json.dumps({"checkpoint": path, "step": step, "eval_set": a.dev, "sentences": len(ev["hyps"]),
                      "dev/loss": ev["loss"], "dev/bleu": ev["bleu"], "dev/chrf": ev["chrf"], "hyp": hyp_path,
                      "ref": ref_path, "eval_seconds": time.perf_counter() - t}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spm", required=True, help="SentencePiece model file (the attn run's <out>/spm.model)")
    ap.add_argument("--train", default="data/bible/train")
    ap.add_argument("--dev", default="data/bible/dev", help="validation prefix (loss, greedy BLEU)")
    ap.add_argument("--src", default="en")
    ap.add_argument("--tgt", default="es")
    ap.add_argument("--out", default="runs/torch-translate")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--max-tokens", type=int, default=4096)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--lr-factor", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=4000)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=1000)
    ap.add_argument("--time-budget", type=float, default=0, help="seconds since start, as attn's (0: no limit)")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-sentences", type=int, default=300)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-hyps", action="store_true", help="write <out>/hyp.<step>.<tgt> at every validation")
    ap.add_argument("--check-attn-checkpoint", metavar="FILE",
                    help="no training: load this attn checkpoint (checkpoint.safetensors of a train-translator run "
                         "with the same options) into the PyTorch model, validate it exactly as during training, "
                         "write <out>/check.hyp.<tgt> and print dev loss/BLEU/chrF as JSON (to compare with the "
                         "attn run's metrics.jsonl at that step)")
    ap.add_argument("--test-checkpoint", metavar="FILE",
                    help="no training: load this checkpoint (an attn *.safetensors or this script's final.pt), "
                         "score it on --dev (give the test prefix; --eval-sentences 0 = every pair) with the same "
                         "loss and greedy decoder as validation, write <out>/test.hyp.<tgt> and print JSON")
    a = ap.parse_args()

    t0 = time.perf_counter()
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    os.makedirs(a.out, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=a.spm)
    pad, bos, eos = sp.pad_id(), sp.bos_id(), sp.eos_id()
    if (pad, bos, eos) != (0, 2, 3):
        raise SystemExit(f"{a.spm}: special ids pad/bos/eos = {pad}/{bos}/{eos}, attn uses 0/2/3")
    vocab = sp.get_piece_size()
    max_pos = max(1024, 2 * a.max_len + 16)  # TranslatorOptions::max_len as train_translator sets it

    train = Corpus.load(f"{a.train}.{a.src}", f"{a.train}.{a.tgt}", sp, a.max_len)
    dev = Corpus.load(f"{a.dev}.{a.src}", f"{a.dev}.{a.tgt}", sp, 1 << 20)
    dev_refs = read_lines(f"{a.dev}.{a.tgt}")
    batches = TokenBatcher(train, a.max_tokens, shuffle=True, seed=a.seed, pad_id=pad, bos_id=bos, eos_id=eos)

    torch.manual_seed(a.seed)
    model = Translator(vocab_size=vocab, d_model=a.d_model, nhead=a.heads, num_encoder_layers=a.layers,
                       num_decoder_layers=a.layers, dim_feedforward=a.ff, dropout=a.dropout, max_len=max_pos,
                       pad_id=pad, bos_id=bos, eos_id=eos)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=0.0, betas=(0.9, 0.98), eps=1e-9, fused=True)  # the peer's optimizer (bench/README.md)
    n_params = sum(p.numel() for p in params)
    print(f"torch translator: {n_params} parameters, {len(train)} training pairs ({train.dropped_empty} empty, "
          f"{train.dropped_long} too long dropped), {batches.num_batches(0)} batches per epoch, vocabulary {vocab}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr, flush=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"args": vars(a), "parameters": n_params, "train_pairs": len(train),
                   "batches_per_epoch": batches.num_batches(0), "torch": torch.__version__}, f, indent=1)
    if a.check_attn_checkpoint:
        return evaluate_checkpoint(a, model, sp, dev, dev_refs, max_pos, a.check_attn_checkpoint, "check")
    if a.test_checkpoint:
        return evaluate_checkpoint(a, model, sp, dev, dev_refs, max_pos, a.test_checkpoint, "test")
    metrics = Metrics(os.path.join(a.out, "metrics.jsonl"))

    step = epoch = batch_index = bad_evals = 0
    best_bleu, train_seconds = -1.0, 0.0
    run_loss = run_tokens = 0.0
    tokens_since_log, log_t = 0, time.perf_counter()
    last = {}
    stopped_early = False
    model.train()
    while epoch < a.max_epochs:
        if batch_index >= batches.num_batches(epoch):
            epoch += 1
            batch_index = 0
            continue
        step_t0 = time.perf_counter()
        b = batches.get(epoch, batch_index)
        batch_index += 1
        step += 1
        lr = noam(step, a.d_model, a.warmup, a.lr_factor)
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(b["src"], b["tgt_in"])
        loss = F.cross_entropy(logits.flatten(0, 1), b["tgt_out"].flatten(), ignore_index=pad,
                               label_smoothing=a.label_smoothing)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        opt.zero_grad()
        l = loss.item()
        train_seconds += time.perf_counter() - step_t0
        run_loss += l * b["tgt_tokens"]
        run_tokens += b["tgt_tokens"]
        tokens_since_log += b["src_tokens"] + b["tgt_tokens"]
        if step % a.log_every == 0:
            dt = time.perf_counter() - log_t
            metrics.log(step, {"train/loss": run_loss / max(1.0, run_tokens), "train/lr": lr,
                               "train/tokens_per_s": tokens_since_log / max(dt, 1e-9), "train/seconds": train_seconds})
            print(f"step {step}: loss {run_loss / max(1.0, run_tokens):.3f}, train {train_seconds:.0f} s",
                  file=sys.stderr, flush=True)
            run_loss = run_tokens = 0.0
            tokens_since_log, log_t = 0, time.perf_counter()
        out_of_time = a.time_budget > 0 and time.perf_counter() - t0 >= a.time_budget
        out_of_steps = a.max_steps > 0 and step >= a.max_steps
        if step % a.eval_every == 0 or out_of_time or out_of_steps:
            ev = evaluate(model, sp, dev, dev_refs, a.eval_sentences, a.max_tokens, max_pos)
            metrics.log(step, {"dev/loss": ev["loss"], "dev/bleu": ev["bleu"], "dev/chrf": ev["chrf"],
                               "train/seconds": train_seconds})
            print(f"step {step}: dev loss {ev['loss']:.3f}, BLEU {ev['bleu']:.2f}, chrF {ev['chrf']:.2f} "
                  f"(training {train_seconds:.0f} s)", file=sys.stderr, flush=True)
            if a.write_hyps:
                with open(os.path.join(a.out, f"hyp.{step}.{a.tgt}"), "w") as f:
                    f.write("".join(h + "\n" for h in ev["hyps"]))
            last = ev
            stop = out_of_time or out_of_steps
            if ev["bleu"] > best_bleu:
                best_bleu, bad_evals = ev["bleu"], 0
            else:
                bad_evals += 1
                if bad_evals >= a.patience:
                    stopped_early = stop = True
            if stop:
                break
            # (as in attn, the next train/tokens_per_s includes this validation's time; train/seconds does not)
    final_path = os.path.join(a.out, "final.pt")  # the last weights (what attn's checkpoint.safetensors holds)
    torch.save({"model": model.state_dict(), "step": step}, final_path + ".tmp")
    os.replace(final_path + ".tmp", final_path)
    print(json.dumps({"steps": step, "dev_bleu": last.get("bleu", 0.0), "dev_chrf": last.get("chrf", 0.0),
                      "dev_loss": last.get("loss", 0.0), "best_dev_bleu": max(0.0, best_bleu),
                      "train_seconds": train_seconds, "seconds": time.perf_counter() - t0,
                      "stopped_early": stopped_early, "parameters": n_params}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
