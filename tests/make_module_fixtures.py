#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for tests/test_nn.cc and tests/test_optim.cc.

Run:  /opt/attn-venv/bin/python tests/make_module_fixtures.py      (needs torch and safetensors)

tests/fixtures/modules.safetensors — per case "<case>.": state.<key> (the module's state_dict),
  input, output, grad_output (the upstream gradient), grad_input, grad.<param> (every parameter grad)
  and, for BatchNorm in training, state_after.<key> (running statistics after the forward).
tests/fixtures/modules_cnn.safetensors — the MNIST CNN; its state is stored as bfloat16 (the test
  loads it into float32 modules: dtype conversion on load), and the big fc1.weight gradient is
  replaced by fc1's input and output gradient (the test rebuilds it as grad_out^T @ input).
tests/fixtures/optim.safetensors — optimizer trajectories: init.<p>, grad<t>.<p> and
  <config>.step<t>.<p> (parameters after every step); lr schedules sched.<name> (lr of group g at
  epoch t in row t); clip_grad_norm_ cases clip<k>.grad<i>, clip<k>.clipped<i>, clip<k>.norm.
"""
import math
import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
torch.manual_seed(1234)
torch.set_default_dtype(torch.float32)


def randomize(module):
    """Non-trivial values for every parameter and floating buffer (so defaults can't pass by luck)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.3)
            elif name.endswith("num_batches_tracked"):
                b.fill_(3)


def run_case(out, case, module, x, train=True, int_input=False):
    module.train(train)
    sd = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    for k, v in sd.items():
        out[f"{case}.state.{k}"] = v
    if not int_input:
        x = x.detach().clone().requires_grad_(True)
    y = module(x)
    gy = torch.randn_like(y)
    (y * gy).sum().backward()
    out[f"{case}.input"] = x.detach().contiguous()
    out[f"{case}.output"] = y.detach().contiguous()
    out[f"{case}.grad_output"] = gy.contiguous()
    if not int_input:
        out[f"{case}.grad_input"] = x.grad.contiguous()
    for name, p in module.named_parameters():
        out[f"{case}.grad.{name}"] = p.grad.contiguous()
    if train:
        for name, b in module.named_buffers():
            out[f"{case}.state_after.{name}"] = b.detach().clone().contiguous()


def module_fixtures():
    out = {}

    m = nn.Linear(5, 3)
    run_case(out, "linear", m, torch.randn(4, 5))
    m = nn.Linear(5, 3, bias=False)
    run_case(out, "linear_nobias", m, torch.randn(2, 3, 5))

    m = nn.Conv1d(3, 4, 3, stride=2, padding=1)
    run_case(out, "conv1d", m, torch.randn(2, 3, 9))
    m = nn.Conv1d(4, 6, 3, dilation=2, groups=2, bias=False)
    run_case(out, "conv1d_groups", m, torch.randn(2, 4, 11))

    m = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0))
    run_case(out, "conv2d", m, torch.randn(2, 3, 7, 6))
    m = nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2)
    run_case(out, "conv2d_groups", m, torch.randn(2, 4, 6, 5))

    for case, mod, x, train in [
        ("bn1d_train", nn.BatchNorm1d(4), torch.randn(6, 4) * 2 + 1, True),
        ("bn1d_3d_train", nn.BatchNorm1d(4, momentum=0.2), torch.randn(3, 4, 5), True),
        ("bn1d_cma_train", nn.BatchNorm1d(4, momentum=None), torch.randn(5, 4), True),
        ("bn1d_eval", nn.BatchNorm1d(4), torch.randn(6, 4), False),
        ("bn2d_train", nn.BatchNorm2d(3), torch.randn(2, 3, 4, 4) * 3 - 1, True),
        ("bn2d_eval", nn.BatchNorm2d(3, eps=1e-3), torch.randn(2, 3, 4, 4), False),
    ]:
        randomize(mod)
        run_case(out, case, mod, x, train=train)

    m = nn.LayerNorm([4, 5])
    randomize(m)
    run_case(out, "layernorm", m, torch.randn(2, 3, 4, 5) * 2 + 0.5)

    m = nn.Embedding(10, 4, padding_idx=1)
    randomize(m)
    with torch.no_grad():
        m.weight[1].zero_()
    idx = torch.tensor([[0, 1, 3, 3, 9], [1, 2, 9, 0, 5]], dtype=torch.int64)
    run_case(out, "embedding", m, idx, int_input=True)

    run_case(out, "maxpool2d", nn.MaxPool2d(2), torch.randn(2, 3, 6, 6))
    run_case(out, "maxpool2d_pad", nn.MaxPool2d(3, stride=2, padding=1), torch.randn(1, 2, 7, 7))
    run_case(out, "avgpool2d", nn.AvgPool2d(2), torch.randn(2, 3, 6, 6))
    run_case(out, "avgpool2d_pad", nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
             torch.randn(1, 2, 7, 7))

    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    run_case(out, "mlp", m, torch.randn(5, 6))
    m = nn.Sequential(nn.Linear(6, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 8), nn.LeakyReLU(0.2),
                      nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 5),
                      nn.LogSoftmax(dim=1))
    run_case(out, "acts", m, torch.randn(4, 6))
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Softmax(dim=-1))
    run_case(out, "flatten_softmax", m, torch.randn(3, 3, 2, 2))

    save_file(out, os.path.join(OUT, "modules.safetensors"))


def cnn_fixture():
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    with torch.no_grad():  # make the stored bfloat16 state exact
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
    out = {}
    for k, v in model.state_dict().items():
        out[f"cnn.state.{k}"] = v.bfloat16().contiguous()
    x = torch.rand(2, 1, 28, 28).requires_grad_(True)
    captured = {}
    fc1 = model[7]
    fc1.register_forward_hook(lambda mod, inp, outp: captured.__setitem__("in", inp[0].detach().clone()))
    fc1.register_full_backward_hook(lambda mod, gin, gout: captured.__setitem__("gout", gout[0].detach().clone()))
    y = model(x)
    gy = torch.randn_like(y)
    (y * gy).sum().backward()
    out["cnn.input"] = x.detach()
    out["cnn.output"] = y.detach()
    out["cnn.grad_output"] = gy
    out["cnn.grad_input"] = x.grad
    for name, p in model.named_parameters():
        if name != "7.weight":
            out[f"cnn.grad.{name}"] = p.grad
    out["cnn.fc1_input"] = captured["in"]          # (2, 3136)
    out["cnn.fc1_grad_output"] = captured["gout"]  # (2, 128)
    # a sanity check of the reconstruction the C++ test does
    assert torch.allclose(captured["gout"].t() @ captured["in"], fc1.weight.grad, atol=1e-5)
    save_file(out, os.path.join(OUT, "modules_cnn.safetensors"))


OPTIM_CONFIGS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adam_betas": lambda ps: torch.optim.Adam(ps, lr=3e-2, betas=(0.8, 0.99), eps=1e-6),
    "adam_wd_amsgrad": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=2e-2, amsgrad=True),
}
STEPS = 20


def optim_fixtures():
    out = {}
    init = {"w": torch.randn(4, 3), "b": torch.randn(3)}
    grads = []
    for t in range(STEPS):
        scale = 1e-4 if t == 7 else (0.1 + t / 10)
        grads.append({k: torch.randn_like(v) * scale for k, v in init.items()})
    for k, v in init.items():
        out[f"init.{k}"] = v
    for t, g in enumerate(grads):
        for k, v in g.items():
            out[f"grad{t}.{k}"] = v
    for name, make in OPTIM_CONFIGS.items():
        params = {k: v.clone().requires_grad_(True) for k, v in init.items()}
        opt = make([params["w"], params["b"]])
        for t in range(STEPS):
            for k, p in params.items():
                p.grad = grads[t][k].clone()
            opt.step()
            for k, p in params.items():
                out[f"{name}.step{t}.{k}"] = p.detach().clone()

    # LR schedules: two groups (base lrs 0.5 and 0.1), 30 epochs; row t = lrs after t steps
    def lrs(make_sched, epochs=30):
        p1, p2 = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([{"params": [p1], "lr": 0.5}, {"params": [p2], "lr": 0.1}], lr=0.5)
        sched = make_sched(opt)
        rows = []
        for _ in range(epochs):
            rows.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.step()
        return torch.tensor(rows, dtype=torch.float64)

    S = torch.optim.lr_scheduler
    out["sched.step"] = lrs(lambda o: S.StepLR(o, step_size=3, gamma=0.5))
    out["sched.multistep"] = lrs(lambda o: S.MultiStepLR(o, milestones=[5, 12], gamma=0.3))
    out["sched.exponential"] = lrs(lambda o: S.ExponentialLR(o, gamma=0.9))
    out["sched.cosine"] = lrs(lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01))
    out["sched.linear"] = lrs(lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=8))
    out["sched.warmup_cosine"] = lrs(lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
            S.CosineAnnealingLR(o, T_max=20, eta_min=1e-3)], milestones=[5]))
    noam = lambda e: 512 ** -0.5 * min((e + 1) ** -0.5, (e + 1) * 10 ** -1.5)
    out["sched.noam"] = lrs(lambda o: S.LambdaLR(o, noam))

    # clip_grad_norm_
    cases = [(1.0, 2.0), (100.0, 2.0), (0.5, math.inf), (1.0, 3.0), (2.0, 1.0)]
    for k, (max_norm, norm_type) in enumerate(cases):
        ps = [torch.zeros(4, 3, requires_grad=True), torch.zeros(5, requires_grad=True)]
        for i, p in enumerate(ps):
            p.grad = torch.randn_like(p) * (1 + i)
            out[f"clip{k}.grad{i}"] = p.grad.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        for i, p in enumerate(ps):
            out[f"clip{k}.clipped{i}"] = p.grad.clone()
        out[f"clip{k}.norm"] = norm.double().reshape(())
    save_file(out, os.path.join(OUT, "optim.safetensors"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    module_fixtures()
    cnn_fixture()
    optim_fixtures()
    for f in ["modules.safetensors", "modules_cnn.safetensors", "optim.safetensors"]:
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")
