#!/usr/bin/env python3
"""The PyTorch side of `attn train-lm`: the same character language model, data, split and recipe.

    ~/.cache/attn/venv/bin/python bench/torch_char_lm.py --data-dir data/austen --out runs/torch-lm \
        --max-steps 300 --eval-every 100 --threads 1
    python3 bench/compare_lm_curves.py runs/lm-lstm/metrics.jsonl runs/torch-lm/metrics.jsonl --tolerance 0.02

Both sides from the same initial weights (docs/recurrent.md, "attn against PyTorch"):
    ~/.cache/attn/venv/bin/python bench/torch_char_lm.py --save-init runs/init-s1.safetensors --init-only --seed 1
    attn train-lm --init-weights runs/init-s1.safetensors --no-resume --out runs/lm-attn ...
    ~/.cache/attn/venv/bin/python bench/torch_char_lm.py --init-weights runs/init-s1.safetensors --out runs/lm-torch ...

Mirrors src/train/language_model.cc (read it when changing either side):
  model      Embedding(V -> embedding) -> nn.LSTM / nn.GRU / nn.RNN(tanh) (hidden, layers, batch_first)
             -> Linear(hidden -> V); the modules are named as attn's CharLM (embedding, rnn, decoder), so
             the state_dict keys are the same on both sides. PyTorch's default initialisation on both
             sides, with different draws unless both start from one file: --save-init FILE writes the
             initial state_dict (safetensors) and `attn train-lm --init-weights FILE --no-resume` starts
             from it; --init-weights FILE here loads such a file (e.g. one attn saved) instead.
  vocabulary <unk> first, then the characters (code points) of train.txt by falling count, ties by
             UTF-8 byte order (text::Vocab); characters of valid/test not in it map to <unk>.
  data       the first floor(N * train_fraction) ids of train.txt (N code points) are cut into batch_size
             streams of L = (n - 1) // batch_size; step k of an epoch trains on chunk k (seq_len) of every
             stream, the state carried (detached) and reset at each epoch start; L // seq_len steps/epoch.
  step       mean cross-entropy, backward, clip_grad_norm_(clip) over all parameters, Adam(lr) with
             PyTorch's defaults (betas 0.9/0.999, eps 1e-8); constant learning rate (no schedule).
  evaluation every eval_every steps and at the last step: mean loss in nats/char over all of valid.txt
             cut into eval_streams streams ((n - 1) // streams predictions each), chunks of 256, state
             carried, eval mode; the lowest gives the best weights, scored on test.txt at the end.
Output: <out>/metrics.jsonl in attn's format (train lines: step, wall_time, train/loss, train/lr,
train/seconds, train/chars_per_s; evaluation lines: step, wall_time, valid/loss, train/seconds) and a
last stdout line of JSON like attn's (valid_loss, best_valid_loss, test_loss, steps, parameters, seconds).
"""
import argparse
import collections
import json
import math
import os
import sys
import time

import torch
from torch import nn


class CharLM(nn.Module):
    def __init__(self, vocab_size, embedding, hidden, layers, cell, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding)
        module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = module(embedding, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab_size)

    def forward(self, ids, state):
        out, state = self.rnn(self.embedding(ids), state)
        return self.decoder(out), state


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def build_vocab(text):
    counts = collections.Counter(text)
    chars = sorted(counts, key=lambda c: (-counts[c], c.encode("utf-8")))
    return {c: i for i, c in enumerate(["<unk>"] + chars)}


def encode(vocab, text):
    return torch.tensor([vocab.get(c, 0) for c in text], dtype=torch.int64)


def stream_chunk(ids, streams, stride, start, length):
    # (streams, length) inputs and targets of chunk [start, start + length) of every stream
    idx = (torch.arange(streams) * stride + start).unsqueeze(1) + torch.arange(length).unsqueeze(0)
    return ids[idx], ids[idx + 1]


@torch.no_grad()
def lm_loss(model, ids, streams=32, chunk=256):
    was_training = model.training
    model.eval()
    n = len(ids) - 1
    streams = max(1, min(streams, n))
    stride = n // streams
    state, total = None, 0.0
    for start in range(0, stride, chunk):
        length = min(chunk, stride - start)
        x, y = stream_chunk(ids, streams, stride, start, length)
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    model.train(was_training)
    return total / (streams * stride)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/austen")
    p.add_argument("--out", default="runs/torch-lm")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--train-fraction", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=0, help="0: no limit")
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--time-budget", type=float, default=0, help="seconds; 0: no limit")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-streams", type=int, default=32)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--save-init", default="", help="write the initial state_dict to this safetensors file")
    p.add_argument("--init-weights", default="", help="start from this safetensors state_dict (strict)")
    p.add_argument("--init-only", action="store_true", help="with --save-init: write the file and exit")
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--no-test", action="store_true")
    return p.parse_args()


class Metrics:
    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8")

    def log(self, step, scalars):
        line = {"step": step, "wall_time": time.time()}
        line.update({k: (v if math.isfinite(v) else None) for k, v in scalars.items()})
        self.f.write(json.dumps(line) + "\n")
        self.f.flush()


def main():
    a = parse_args()
    if not 0 < a.train_fraction <= 1:
        sys.exit(f"--train-fraction must be in (0, 1], got {a.train_fraction}")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    train_text = read(os.path.join(a.data_dir, "train.txt"))
    vocab = build_vocab(train_text)
    train_ids = encode(vocab, train_text)
    train_ids = train_ids[: max(2, int(len(train_ids) * a.train_fraction))]
    valid_ids = encode(vocab, read(os.path.join(a.data_dir, "valid.txt")))
    torch.manual_seed(a.seed)
    model = CharLM(len(vocab), a.embedding, a.hidden, a.layers, a.cell, a.dropout)
    if a.init_weights:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(a.init_weights), strict=True)
    if a.save_init:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.save_init)
        print(f"wrote the initial weights to {a.save_init}", file=sys.stderr)
    if a.init_only:
        if not a.save_init:
            sys.exit("--init-only needs --save-init FILE")
        return
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    stride = (len(train_ids) - 1) // a.batch_size
    steps_per_epoch = stride // a.seq_len
    if steps_per_epoch == 0:
        sys.exit("the training text is too short for this batch size and seq_len")
    params = sum(p.numel() for p in model.parameters())
    print(f"torch char-lm: {a.cell}, {params} parameters, vocabulary {len(vocab)}, {len(train_ids)} training chars, "
          f"{steps_per_epoch} steps per epoch, {torch.get_num_threads()} threads", file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    metrics = Metrics(os.path.join(a.out, "metrics.jsonl"))
    best_path = os.path.join(a.out, "best.pt")
    step, train_seconds, best, valid = 0, 0.0, math.inf, math.nan
    window_loss, window_n, window_t = 0.0, 0, 0.0
    done = False
    for epoch in range(a.epochs):
        state = None
        for batch in range(steps_per_epoch):
            start = time.perf_counter()
            x, y = stream_chunk(train_ids, a.batch_size, stride, batch * a.seq_len, a.seq_len)
            logits, state = model(x, state)
            state = detach(state)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            step += 1
            window_loss += loss.item()
            window_n += 1
            spent = time.perf_counter() - start
            train_seconds += spent
            window_t += spent
            out_of_time = a.time_budget > 0 and time.perf_counter() - t0 >= a.time_budget
            last = (a.max_steps > 0 and step >= a.max_steps) or out_of_time or (
                epoch == a.epochs - 1 and batch == steps_per_epoch - 1)
            if a.log_every > 0 and step % a.log_every == 0:
                metrics.log(step, {"train/loss": window_loss / window_n, "train/lr": a.lr,
                                   "train/seconds": train_seconds,
                                   "train/chars_per_s": window_n * a.batch_size * a.seq_len / window_t})
                window_loss, window_n, window_t = 0.0, 0, 0.0
            if (a.eval_every > 0 and step % a.eval_every == 0) or last:
                valid = lm_loss(model, valid_ids, a.eval_streams)
                print(f"step {step}: valid loss {valid:.4f} nats/char", file=sys.stderr)
                metrics.log(step, {"valid/loss": valid, "train/seconds": train_seconds})
                if valid < best:
                    best = valid
                    torch.save(model.state_dict(), best_path)
            if last:
                done = True
                break
        if done:
            break
    test = None
    if not a.no_test:
        model.load_state_dict(torch.load(best_path))
        test = lm_loss(model, encode(vocab, read(os.path.join(a.data_dir, "test.txt"))), a.eval_streams)
    print(json.dumps({"task": "char-lm", "side": "pytorch", "torch": torch.__version__, "cell": a.cell,
                      "steps": step, "valid_loss": valid, "best_valid_loss": best, "test_loss": test,
                      "parameters": params, "vocab_size": len(vocab), "train_seconds": train_seconds,
                      "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
