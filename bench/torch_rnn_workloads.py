"""PyTorch twins of bench/rnn_workloads.h (issue 17): the char LM's training step (LSTM / GRU), sampling
from the LSTM char LM one character at a time, and the Kim text CNN's training step. Used by
torch_bench.py's WORKLOADS; same shapes, units and parameter counts as attn's side (check_peers.py).

    from torch_rnn_workloads import char_lm_train_step, lstm_sample, textcnn_train_step
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, EMBED, HIDDEN, LAYERS = 96, 128, 512, 2


class CharLM(nn.Module):
    """attn's train::CharLM: Embedding -> LSTM/GRU (batch_first) -> Linear."""

    def __init__(self, cell):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(EMBED, HIDDEN, num_layers=LAYERS, batch_first=True)
        self.decoder = nn.Linear(HIDDEN, VOCAB)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.decoder(out), state


def mflop_per_token(cell):
    """The twin of char_lm_train_mflop_per_token: forward multiply-adds x 2, times 3 for fwd + bwd."""
    gates = 4 if cell == "lstm" else 3
    forward = gates * HIDDEN * (EMBED + HIDDEN) + gates * HIDDEN * 2 * HIDDEN * (LAYERS - 1) + HIDDEN * VOCAB
    return 3 * 2 * forward / 1e6


def autocast_rnn_or_unavailable(model):
    """PyTorch's bf16 RNN is oneDNN's primitive, which CPUs without AVX512_BF16 / AMX lack (PyTorch 2.15
    raises "could not create a primitive descriptor" on an AVX2-only CPU): the peer is then unavailable."""
    from bench_job import NotCompiled
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.zeros(1, 2, dtype=torch.long))[0].float().sum().backward()
    except RuntimeError as e:
        raise NotCompiled(f"PyTorch's bf16 RNN does not run on this CPU ({str(e).splitlines()[0]})")
    model.zero_grad(set_to_none=True)


def char_lm_train_step(job_class, count_parameters, maybe_compile, cell, compiled=False, autocast=False):
    """autocast: forward and loss under torch.autocast("cpu", dtype=torch.bfloat16) (the
    pytorch-autocast-bf16 peer of the *_lm_train_step_bf16 rows; it covers the oneDNN RNN layer)."""
    batch, steps = 32, 64
    model = CharLM(cell).train()
    if autocast:
        autocast_rnn_or_unavailable(model)
    ids = torch.randint(0, VOCAB, (batch, steps))
    targets = torch.randint(0, VOCAB, (batch * steps,))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
    forward = maybe_compile(model, compiled)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits, _ = forward(ids)
            loss = F.cross_entropy(logits.flatten(0, 1), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return job_class(step, "tokens/s", units=float(batch * steps), warmup=2, repeats=5,
                     extra={"parameters": count_parameters(model), "mflop_per_token": mflop_per_token(cell)})


def lstm_sample(job_class, count_parameters, length=128):
    """A one-character prompt, then `length` characters sampled one at a time (softmax at temperature 1,
    torch.multinomial) with the state carried; eval mode, inference_mode."""
    model = CharLM("lstm").eval()
    gen = torch.Generator().manual_seed(0)
    produced = [0]

    def run():
        with torch.inference_mode():
            ids = torch.tensor([[ord("T") - ord(" ") + 1]])
            logits, state = model(ids)
            out = []
            for _ in range(length):
                probs = torch.softmax(logits[0, -1], dim=-1)
                nxt = torch.multinomial(probs, 1, generator=gen)
                out.append(int(nxt))
                logits, state = model(nxt.view(1, 1), state)
            produced[0] = len(out)

    def check():
        if produced[0] != length:
            raise RuntimeError(f"lstm_sample: {produced[0]} characters generated")
    return job_class(run, "tokens/s", units=float(length), warmup=2, repeats=5,
                     extra={"parameters": count_parameters(model)}, check=check)


class TextCNN(nn.Module):
    """attn's train::TextCNN (Kim 2014): widths 3, 4, 5 x 100 filters, max over time, dropout, Linear."""

    def __init__(self, words, classes, embed=128, widths=(3, 4, 5), filters=100, dropout=0.5):
        super().__init__()
        self.embedding = nn.Embedding(words, embed, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embed, filters, k) for k in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(filters * len(widths), classes)

    def forward(self, ids):
        e = self.embedding(ids).transpose(1, 2)  # (B, E, T)
        pooled = [F.relu(conv(e)).amax(dim=2) for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, 1)))


def textcnn_train_step(job_class, count_parameters, maybe_compile, compiled=False):
    batch, length, words, classes = 32, 200, 10000, 4
    model = TextCNN(words, classes).train()
    ids = torch.randint(1, words, (batch, length))
    labels = torch.randint(0, classes, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    forward = maybe_compile(model, compiled)

    def step():
        loss = F.cross_entropy(forward(ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return job_class(step, "examples/s", units=float(batch), warmup=2, repeats=5,
                     extra={"parameters": count_parameters(model)})
