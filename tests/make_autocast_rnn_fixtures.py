#!/usr/bin/env python3
"""PyTorch fixtures for the recurrent layers under attn::Autocast (tests/test_rnn_autocast.cc):
tests/fixtures/autocast_rnn.safetensors.

    ~/.cache/attn/venv/bin/python tests/make_autocast_rnn_fixtures.py    (needs torch, safetensors)

One training step's forward + backward under torch.autocast("cpu", dtype=torch.bfloat16), and the same
step in float32, for:
  lstm_lm    Embedding(20, 8) -> 2-layer LSTM(8, 16, batch_first) -> Linear(16, 20) -> cross_entropy
             (the character LM's shape, small)
  bigru      bidirectional 2-layer GRU(6, 10) from a given h0 -> mse_loss(output) + mean(h_n^2)
  lstm_proj  LSTM(6, 12, proj_size 5) from given (h0, c0) -> mse_loss(output) + mean(c_n^2)
  rnn_relu   2-layer RNN(6, 10, relu, bidirectional) -> mse_loss(output)
For each case: "<case>/param/<name>" (float32 state), "<case>/in/<name>", "<case>/out" (the recurrent
layer's output, in the dtype PyTorch gives under autocast), "<case>/loss", "<case>/grad_param/<name>"
(float32), "<case>/grad_in/<name>" (inputs that require grad: x, h0, c0), and "<case>/fp32/..." the same
without autocast, so the test can state its tolerances against the size of bf16's own effect.
PyTorch runs its own cell loop here (torch.backends.mkldnn off): its oneDNN bf16 LSTM exists only on CPUs
with AVX-512 (on an AVX2-only CPU it fails to create the primitive), and the reference should not depend
on the CPU that made it. Under autocast that loop runs the gates' linear layers in bf16.
Metadata "dtypes" (JSON): the dtypes PyTorch's autocast gives the LSTM's output, h_n and c_n, the GRU's
and the RNN's output and h_n.
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
tensors, cases = {}, []


def run_case(name, modules, inputs, grad_inputs, step):
    for prefix, m in modules.items():
        m.train()
        for k, v in m.state_dict().items():
            tensors[f"{name}/param/{prefix}{k}"] = v.detach().clone().contiguous()
    for k, v in inputs.items():
        tensors[f"{name}/in/{k}"] = v.detach().clone().contiguous()
    for pre, autocast in ((f"{name}/", True), (f"{name}/fp32/", False)):
        for m in modules.values():
            m.zero_grad()
        leaves = {k: inputs[k].detach().clone().requires_grad_(True) for k in grad_inputs}
        args = {**inputs, **leaves}
        with torch.backends.mkldnn.flags(enabled=False), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, loss = step(modules, args)
        loss.backward()
        tensors[pre + "out"] = out.detach().contiguous()
        tensors[pre + "loss"] = loss.detach().float().reshape(1)
        for prefix, m in modules.items():
            for k, p in m.named_parameters():
                assert p.grad is not None and p.grad.dtype == torch.float32, k
                tensors[f"{pre}grad_param/{prefix}{k}"] = p.grad.detach().clone().contiguous()
        for k, leaf in leaves.items():
            tensors[f"{pre}grad_in/{k}"] = leaf.grad.detach().float().contiguous()
    cases.append(name)


# ---- the character LM's shape
lm = {"emb.": torch.nn.Embedding(20, 8), "lstm.": torch.nn.LSTM(8, 16, num_layers=2, batch_first=True),
      "head.": torch.nn.Linear(16, 20)}


def lm_step(m, i):
    out, _ = m["lstm."](m["emb."](i["tokens"]))
    logits = m["head."](out)
    return out, F.cross_entropy(logits.reshape(-1, 20).float(), i["targets"].reshape(-1))


run_case("lstm_lm", lm, {"tokens": torch.randint(0, 20, (3, 7)), "targets": torch.randint(0, 20, (3, 7))}, [],
         lm_step)

# ---- bidirectional GRU from h0 (gradients of x and h0 too)
gru = {"": torch.nn.GRU(6, 10, num_layers=2, bidirectional=True)}


def gru_step(m, i):
    out, h_n = m[""](i["x"], i["h0"])
    return out, F.mse_loss(out.float(), i["target"]) + (h_n.float() ** 2).mean()


run_case("bigru", gru, {"x": torch.randn(5, 3, 6), "h0": torch.randn(4, 3, 10) * 0.5, "target": torch.randn(5, 3, 20)},
         ["x", "h0"], gru_step)

# ---- LSTM with projection from (h0, c0)
proj = {"": torch.nn.LSTM(6, 12, proj_size=5)}


def proj_step(m, i):
    out, (h_n, c_n) = m[""](i["x"], (i["h0"], i["c0"]))
    return out, F.mse_loss(out.float(), i["target"]) + (c_n.float() ** 2).mean()


run_case("lstm_proj", proj, {"x": torch.randn(6, 2, 6), "h0": torch.randn(1, 2, 5) * 0.5,
                             "c0": torch.randn(1, 2, 12) * 0.5, "target": torch.randn(6, 2, 5)},
         ["x", "h0", "c0"], proj_step)

# ---- bidirectional 2-layer ReLU RNN
rnn = {"": torch.nn.RNN(6, 10, num_layers=2, nonlinearity="relu", bidirectional=True)}


def rnn_step(m, i):
    out, _ = m[""](i["x"])
    return out, F.mse_loss(out.float(), i["target"])


run_case("rnn_relu", rnn, {"x": torch.randn(5, 3, 6), "target": torch.randn(5, 3, 20)}, ["x"], rnn_step)

dtypes = {}
with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", dtype=torch.bfloat16):
    o, (h, c) = torch.nn.LSTM(4, 6)(torch.randn(3, 2, 4))
    dtypes.update({"lstm output": str(o.dtype), "lstm h_n": str(h.dtype), "lstm c_n": str(c.dtype)})
    o, h = torch.nn.GRU(4, 6)(torch.randn(3, 2, 4))
    dtypes.update({"gru output": str(o.dtype), "gru h_n": str(h.dtype)})
    o, h = torch.nn.RNN(4, 6)(torch.randn(3, 2, 4))
    dtypes.update({"rnn output": str(o.dtype), "rnn h_n": str(h.dtype)})
dtypes = {k: v.replace("torch.", "") for k, v in dtypes.items()}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "autocast_rnn.safetensors")
save_file(tensors, out, metadata={"cases": json.dumps(cases), "dtypes": json.dumps(dtypes), "torch": torch.__version__})
print("wrote", out, os.path.getsize(out), "bytes; dtypes:", json.dumps(dtypes))
