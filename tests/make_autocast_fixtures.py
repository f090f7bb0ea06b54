#!/usr/bin/env python3
"""PyTorch fixtures for attn::Autocast (tests/test_autocast.cc): tests/fixtures/autocast.safetensors.

    ~/.cache/attn/venv/bin/python tests/make_autocast_fixtures.py    (needs torch, safetensors)

Two training steps' worth of forward + backward under torch.autocast("cpu", dtype=torch.bfloat16):
  mlp          Linear(12, 32) -> ReLU -> Linear(32, 6) -> cross_entropy against class targets
  transformer  nn.Transformer(d_model 16, 4 heads, 2 + 2 layers, FF 32, dropout 0) on (src, tgt) with
               padding and a causal mask, then mse_loss against a random target
For each case: "<case>/param/<name>" (float32 state), "<case>/in/<name>", "<case>/out" (the model's
output, stored in the dtype PyTorch gives under autocast), "<case>/loss", "<case>/grad_param/<name>"
(float32 gradients of the float32 master weights), and "<case>/fp32/out", "<case>/fp32/loss",
"<case>/fp32/grad_param/<name>": the same step without autocast, so the test can state its tolerances
against the size of bf16's own effect.
Metadata "dtypes" (JSON): the output dtype PyTorch's CPU autocast gives for each op attn implements,
with float32 inputs unless the key says "(bf16 in)"; the test checks attn gives the same.
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
tensors, cases = {}, []


def ac():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def run_case(name, model, inputs, step):
    model.train()
    for k, v in model.state_dict().items():
        tensors[f"{name}/param/{k}"] = v.detach().clone().contiguous()
    for k, v in inputs.items():
        tensors[f"{name}/in/{k}"] = v.detach().clone().contiguous()
    for prefix, autocast in ((f"{name}/", True), (f"{name}/fp32/", False)):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, loss = step(model, inputs)
        loss.backward()
        tensors[prefix + "out"] = out.detach().contiguous()
        tensors[prefix + "loss"] = loss.detach().reshape(1)
        for k, p in model.named_parameters():
            assert p.grad is not None and p.grad.dtype == torch.float32, k
            tensors[f"{prefix}grad_param/{k}"] = p.grad.detach().clone().contiguous()
    cases.append(name)


# ---- MLP + cross-entropy
mlp = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 6))
run_case("mlp", mlp, {"x": torch.randn(10, 12), "y": torch.randint(0, 6, (10,))},
         lambda m, i: (lambda out: (out, F.cross_entropy(out, i["y"])))(m(i["x"])))

# ---- nn.Transformer encoder-decoder step
E, H, S, T, N, FF = 16, 4, 7, 5, 3, 32


def pad_mask(n, length, lengths):
    m = torch.zeros(n, length, dtype=torch.bool)
    for b, l in enumerate(lengths):
        m[b, l:] = True
    return m


model = torch.nn.Transformer(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF,
                             dropout=0.0)
tr_in = {"src": torch.randn(S, N, E), "tgt": torch.randn(T, N, E), "target": torch.randn(T, N, E),
         "tgt_mask": torch.triu(torch.ones(T, T, dtype=torch.bool), 1), "skpm": pad_mask(N, S, [7, 4, 6]),
         "tkpm": pad_mask(N, T, [5, 5, 3])}


def transformer_step(m, i):
    out = m(i["src"], i["tgt"], tgt_mask=i["tgt_mask"], src_key_padding_mask=i["skpm"],
            tgt_key_padding_mask=i["tkpm"], memory_key_padding_mask=i["skpm"])
    return out, F.mse_loss(out, i["target"])


run_case("transformer", model, tr_in, transformer_step)

# ---- output dtypes per op under autocast
x32, w32 = torch.randn(4, 8), torch.randn(6, 8)
xb = x32.to(torch.bfloat16)
labels = torch.randint(0, 8, (4,))
probes = {
    "linear": lambda: F.linear(x32, w32),
    "matmul": lambda: torch.matmul(x32, w32.t()),
    "mm": lambda: torch.mm(x32, w32.t()),
    "bmm": lambda: torch.bmm(x32[None], w32.t()[None]),
    "conv1d": lambda: F.conv1d(torch.randn(1, 2, 9), torch.randn(3, 2, 3)),
    "conv2d": lambda: F.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)),
    "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(x32[None], x32[None], x32[None]),
    "cross_entropy (bf16 in)": lambda: F.cross_entropy(xb, labels),
    "nll_loss (bf16 in)": lambda: F.nll_loss(xb, labels),
    "mse_loss (bf16 in)": lambda: F.mse_loss(xb, xb),
    "binary_cross_entropy_with_logits (bf16 in)": lambda: F.binary_cross_entropy_with_logits(xb, xb.sigmoid()),
    "softmax": lambda: F.softmax(x32, -1),
    "softmax (bf16 in)": lambda: F.softmax(xb, -1),
    "log_softmax (bf16 in)": lambda: F.log_softmax(xb, -1),
    "layer_norm (bf16 in)": lambda: F.layer_norm(xb, (8,), torch.ones(8), torch.zeros(8)),
    "gelu (bf16 in)": lambda: F.gelu(xb),
    "relu (bf16 in)": lambda: F.relu(xb),
    "sum (bf16 in)": lambda: xb.sum(),
    "mean (bf16 in)": lambda: xb.mean(),
    "add (bf16 in, float32 in)": lambda: xb + x32,
    "embedding": lambda: F.embedding(labels % 6, w32),
}
dtypes = {}
with ac():
    for k, f in probes.items():
        dtypes[k] = str(f().dtype).replace("torch.", "")

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "autocast.safetensors")
save_file(tensors, out, metadata={"cases": json.dumps(cases), "dtypes": json.dumps(dtypes), "torch": torch.__version__})
print("wrote", out, os.path.getsize(out), "bytes; dtypes:", json.dumps(dtypes))
