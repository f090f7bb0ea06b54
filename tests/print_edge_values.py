#!/usr/bin/env python3
"""Prints what PyTorch returns for the special values of tests/test_edge_values.cc (outputs and input
gradients for an upstream gradient of ones, float32 and float64), the source of that file's expected
values. Run with the fixtures' environment (torch installed):

    /opt/attn-venv/bin/python tests/print_edge_values.py
"""
import math

import torch

inf, nan = math.inf, math.nan
tiny = math.ldexp(1.0, -140)  # a float32 denormal, exact in both dtypes

CASES = [  # (name, f, inputs)
    ("relu", torch.relu, [-0.0, nan, tiny, -1.0]),
    ("tanh", torch.tanh, [-0.0, 0.0]),
    ("clamp(-1, 1)", lambda x: torch.clamp(x, -1.0, 1.0), [1.0, -1.0, 0.0, 0.5, -2.0, nan]),
    ("clamp(min=0)", lambda x: torch.clamp(x, min=0.0), [1.0, -1.0, 0.0, 0.5]),
    ("clamp(max=0.5)", lambda x: torch.clamp(x, max=0.5), [1.0, -1.0, 0.0, 0.5]),
    ("pow 0.5", lambda x: x.pow(0.5), [-0.0, -inf, 4.0, -4.0]),
    ("pow -0.5", lambda x: x.pow(-0.5), [-0.0, -inf, 4.0, 0.0]),
    ("pow 1.5", lambda x: x.pow(1.5), [-0.0, -inf, 4.0, 0.0]),
    ("pow 0", lambda x: x.pow(0.0), [0.0, -0.0, 2.0, inf]),
    ("max", lambda x: x.max(), [1.0, nan, 3.0, nan]),
    ("min ties", lambda x: x.min(), [1.0, 3.0, 1.0]),
    ("amax", lambda x: x.amax(), [1.0, nan, 3.0]),
]


def fmt(values):
    return "{" + ", ".join(repr(v) for v in values) + "}"


def main():
    print("torch", torch.__version__)
    for dt in (torch.float32, torch.float64):
        for name, f, xs in CASES:
            x = torch.tensor(xs, dtype=dt, requires_grad=True)
            y = f(x)
            y.backward(torch.ones_like(y))
            print(f"{name:15s} {str(dt)[6:]:8s} y = {fmt(y.detach().double().flatten().tolist())}  "
                  f"grad = {fmt(x.grad.double().tolist())}")
        for is_max in (True, False):
            a = torch.tensor([nan, 1.0, 0.0, -1.0], dtype=dt, requires_grad=True)
            b = torch.zeros(4, dtype=dt, requires_grad=True)
            y = torch.maximum(a, b) if is_max else torch.minimum(a, b)
            y.backward(torch.ones_like(y))
            print(f"{'maximum' if is_max else 'minimum':15s} {str(dt)[6:]:8s} y = {fmt(y.detach().double().tolist())}  "
                  f"grad a = {fmt(a.grad.double().tolist())}  grad b = {fmt(b.grad.double().tolist())}")
    a = torch.tensor([1, -2, 0, 5, -2**63]); b = torch.tensor([0, 0, 0, 2, -1])
    print("int64 / int64  ", torch.div(a, b).dtype, fmt(torch.div(a, b).double().tolist()))
    print("int64 ** int64 ", fmt(torch.pow(a[:4], b[:4]).tolist()))
    print("int64 ** neg   ", fmt(torch.pow(torch.tensor([2, 3, 1, -1, -1, 0, -2, 2**40, 3]),
                                           torch.tensor([-1, -1, -5, -3, -2, -1, -2, 2, 3])).tolist()))
    print("int32 3 ** 21  ", fmt(torch.pow(torch.tensor([3], dtype=torch.int32), torch.tensor([21], dtype=torch.int32)).tolist()))
    for what, fn in (("int32 div_", lambda: torch.tensor([3], dtype=torch.int32).div_(torch.tensor([2], dtype=torch.int32))),
                     ("int ** -1 (a Python int exponent)", lambda: torch.pow(torch.tensor([2, 3]), -1))):
        try:
            fn()
            print(what, "did not raise")
        except RuntimeError as e:
            print(what, "raises:", str(e).splitlines()[0])


if __name__ == "__main__":
    main()
