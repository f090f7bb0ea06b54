#!/usr/bin/env python3
"""tests/make_fixtures.py — PyTorch reference fixtures for every op in include/attn/ops.h and the
differentiable Tensor views in include/attn/tensor.h.

    /opt/attn-venv/bin/python tests/make_fixtures.py          # writes tests/fixtures/ops.{safetensors,json}

Each case names an op (a row of the C++ table in tests/op_table.h), its arguments, and its inputs.
Inputs are stored contiguous ("<case>/in<i>"); an input's "view" (e.g. [["transpose", 0, 1]]) says
which Tensor view methods the C++ harness applies to get the (non-contiguous) op input, and "desc"
says it in words. The view result is detached and becomes the leaf, so "<case>/grad_in<i>" has the
op input's shape. For each float output that carries a gradient there is a random upstream
gradient "<case>/grad_out" ("grad_out<k>" when the op has several outputs, stored as "out<k>").

References are computed in float64 from the float32 inputs and rounded to float32, so the C++ f32
result is compared with the exact answer rather than with PyTorch's own f32 rounding.
"""
import json
import math
import os
import re
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")
REPO = os.path.dirname(HERE)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
          "int32": torch.int32, "bool": torch.bool}
NAME_OF = {v: k for k, v in DTYPES.items()}


# ------------------------------------------------------------------------------------------ inputs
class In:
    """One op input: shape of the stored (contiguous) tensor, how to fill it, views to apply."""

    def __init__(self, shape, kind="randn", dtype="float32", grad=None, view=(), name=None, **kw):
        self.shape = list(shape)
        self.kind = kind
        self.dtype = dtype
        self.grad = (dtype in ("float32", "float64")) if grad is None else grad
        self.view = [list(v) for v in view]
        self.name = name
        self.kw = kw

    def make(self, gen):
        s, k, kw = self.shape, self.kind, self.kw
        if k == "randn":
            t = torch.randn(s, generator=gen)
        elif k == "uniform":
            lo, hi = kw.get("low", 0.0), kw.get("high", 1.0)
            t = lo + (hi - lo) * torch.rand(s, generator=gen)
        elif k == "pos":  # strictly positive, away from 0
            t = 0.5 + 1.5 * torch.rand(s, generator=gen)
        elif k == "away0":  # |x| >= 0.1: no kink of relu/abs/... nearby
            r = torch.randn(s, generator=gen)
            t = torch.sign(r) * (0.1 + r.abs())
        elif k == "int":  # integers in [low, high)
            t = torch.randint(kw.get("low", 0), kw["high"], s, generator=gen)
        elif k == "intf":  # integer-valued floats, so that comparisons hit equality
            t = torch.randint(-2, 3, s, generator=gen).double()
        elif k == "bool":
            t = torch.rand(s, generator=gen) < kw.get("p", 0.5)
        elif k == "ones":
            t = torch.ones(s)
        elif k == "value":
            t = torch.tensor(kw["value"]).reshape(s)
        else:
            raise ValueError(f"unknown input kind {k}")
        return t.to(DTYPES[self.dtype])

    def desc(self):
        shape = "(" + ", ".join(str(d) for d in self.shape) + ("," if len(self.shape) == 1 else "") + ")"
        base = f"{'an' if self.dtype[0] in 'aeiou' else 'a'} {self.dtype} {shape} tensor"
        if not self.view:
            return base
        steps = ".".join(f"{v[0]}({', '.join(json.dumps(a) for a in v[1:])})" for v in self.view)
        return f"{steps} of {base}"


def apply_view(t, view):
    for step in view:
        name, args = step[0], step[1:]
        if name == "transpose":
            t = t.transpose(args[0], args[1])
        elif name == "t":
            t = t.t()
        elif name == "permute":
            t = t.permute(*args[0])
        elif name == "slice":  # dim, start, end, step
            dim, start, end, stp = args
            idx = [slice(None)] * t.dim()
            idx[dim] = slice(start, end, stp)
            t = t[tuple(idx)]
        elif name == "narrow":
            t = t.narrow(args[0], args[1], args[2])
        elif name == "select":
            t = t.select(args[0], args[1])
        elif name == "expand":
            t = t.expand(*args[0])
        elif name == "unsqueeze":
            t = t.unsqueeze(args[0])
        else:
            raise ValueError(f"unknown view step {name}")
    return t


# ------------------------------------------------------------------------ op implementations (torch)
def all_dims(x, dims):
    return list(dims) if dims else list(range(x.dim()))


def reduce_dims(fn, x, a):
    dims, keep = a.get("dims", []), a.get("keepdim", False)
    if not dims and not keep:
        return fn(x)
    return fn(x, dim=all_dims(x, dims), keepdim=keep)


REDUCTION = {"none": "none", "mean": "mean", "sum": "sum"}


def by_name(inputs, specs, name):
    for t, s in zip(inputs, specs):
        if s.name == name:
            return t
    return None


def _bn(x, a, sp):
    rm, rv = by_name(x, sp, "running_mean"), by_name(x, sp, "running_var")
    rm = rm.clone() if rm is not None else None
    rv = rv.clone() if rv is not None else None
    y = F.batch_norm(x[0], rm, rv, by_name(x, sp, "weight"), by_name(x, sp, "bias"),
                     training=a["training"], momentum=a.get("momentum", 0.1), eps=a.get("eps", 1e-5))
    outs = [y]
    if rm is not None:
        outs += [rm, rv]
    return tuple(outs)


def _sdpa(x, a, s, q=None, k=None, v=None):
    """attn's key_padding_mask ((N, S), true = ignore) as torch's SDPA mask ((N, 1, 1, S), true = take part)."""
    q, k, v = (x[0], x[1], x[2]) if q is None else (q, k, v)
    mask, kpm = by_name(x, s, "attn_mask"), by_name(x, s, "key_padding_mask")
    if kpm is not None:
        keep = ~kpm[:, None, None, :]
        if mask is None:
            mask = keep
        elif mask.dtype == torch.bool:
            mask = mask & keep
        else:
            mask = mask.masked_fill(~keep, -math.inf)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=a.get("is_causal", False),
                                          scale=a.get("scale"))


def _packed_sdpa(x, a, s):
    """Heads read from column blocks of packed (N, T, C) projections: sources "qkv" (x[0] for all three),
    "q_kv" (x[0]; x[1] for key and value) or "q_k_v"."""
    H, E = a["num_heads"], a["embed_dim"]
    n = {"qkv": 1, "q_kv": 2, "q_k_v": 3}[a["sources"]]
    src = [x[0], x[min(1, n - 1)], x[n - 1]]

    def heads(t, c):
        return t[..., c:c + E].reshape(t.shape[0], t.shape[1], H, E // H).transpose(1, 2)
    q, k, v = (heads(t, c) for t, c in zip(src, a["columns"]))
    return _sdpa(x, a, s, q, k, v)


def _pool_stride(a):
    return a.get("stride", a["kernel_size"])


# Each takes (inputs, args, input specs) and returns a tensor or a tuple of tensors.
OPS = {
    # elementwise, broadcasting
    "add": lambda x, a, s: torch.add(x[0], x[1], alpha=a.get("alpha", 1)),
    "sub": lambda x, a, s: torch.sub(x[0], x[1], alpha=a.get("alpha", 1)),
    "mul": lambda x, a, s: torch.mul(x[0], x[1]),
    "div": lambda x, a, s: torch.div(x[0], x[1]),
    "pow": lambda x, a, s: torch.pow(x[0], x[1]),
    "maximum": lambda x, a, s: torch.maximum(x[0], x[1]),
    "minimum": lambda x, a, s: torch.minimum(x[0], x[1]),
    "add_scalar": lambda x, a, s: x[0] + a["other"],
    "sub_scalar": lambda x, a, s: x[0] - a["other"],
    "mul_scalar": lambda x, a, s: x[0] * a["other"],
    "div_scalar": lambda x, a, s: x[0] / a["other"],
    "rsub_scalar": lambda x, a, s: a["other"] - x[0],
    "rdiv_scalar": lambda x, a, s: a["other"] / x[0],
    "pow_scalar": lambda x, a, s: torch.pow(x[0], a["exponent"]),
    "neg": lambda x, a, s: torch.neg(x[0]),
    "exp": lambda x, a, s: torch.exp(x[0]),
    "log": lambda x, a, s: torch.log(x[0]),
    "sqrt": lambda x, a, s: torch.sqrt(x[0]),
    "rsqrt": lambda x, a, s: torch.rsqrt(x[0]),
    "abs": lambda x, a, s: torch.abs(x[0]),
    "sin": lambda x, a, s: torch.sin(x[0]),
    "cos": lambda x, a, s: torch.cos(x[0]),
    "square": lambda x, a, s: torch.square(x[0]),
    "clamp": lambda x, a, s: torch.clamp(x[0], min=a.get("min"), max=a.get("max")),
    "where": lambda x, a, s: torch.where(x[0], x[1], x[2]),
    "where_scalar": lambda x, a, s: torch.where(x[0], x[1], torch.tensor(a["other"], dtype=x[1].dtype)),
    "logical_not": lambda x, a, s: torch.logical_not(x[0]),
    "logical_and": lambda x, a, s: torch.logical_and(x[0], x[1]),
    "logical_or": lambda x, a, s: torch.logical_or(x[0], x[1]),
    # reductions
    "sum": lambda x, a, s: reduce_dims(torch.sum, x[0], a),
    "mean": lambda x, a, s: reduce_dims(torch.mean, x[0], a),
    "amax": lambda x, a, s: torch.amax(x[0], dim=all_dims(x[0], a.get("dims", [])), keepdim=a.get("keepdim", False)),
    "amin": lambda x, a, s: torch.amin(x[0], dim=all_dims(x[0], a.get("dims", [])), keepdim=a.get("keepdim", False)),
    "max_all": lambda x, a, s: torch.max(x[0]),
    "min_all": lambda x, a, s: torch.min(x[0]),
    "max_dim": lambda x, a, s: tuple(torch.max(x[0], a["dim"], keepdim=a.get("keepdim", False))),
    "min_dim": lambda x, a, s: tuple(torch.min(x[0], a["dim"], keepdim=a.get("keepdim", False))),
    "argmax": lambda x, a, s: torch.argmax(x[0], a["dim"], keepdim=a.get("keepdim", False)),
    "topk": lambda x, a, s: tuple(torch.topk(x[0], a["k"], a["dim"], largest=a.get("largest", True))),
    "argmin": lambda x, a, s: torch.argmin(x[0], a["dim"], keepdim=a.get("keepdim", False)),
    "var": lambda x, a, s: torch.var(x[0], dim=all_dims(x[0], a.get("dims", [])), correction=a.get("correction", 1), keepdim=a.get("keepdim", False)),
    "std": lambda x, a, s: torch.std(x[0], dim=all_dims(x[0], a.get("dims", [])), correction=a.get("correction", 1), keepdim=a.get("keepdim", False)),
    # linear algebra
    "matmul": lambda x, a, s: torch.matmul(x[0], x[1]),
    "mm": lambda x, a, s: torch.mm(x[0], x[1]),
    "bmm": lambda x, a, s: torch.bmm(x[0], x[1]),
    "linear": lambda x, a, s: F.linear(x[0], x[1], x[2] if len(x) > 2 else None),
    # activations
    "sigmoid": lambda x, a, s: torch.sigmoid(x[0]),
    "tanh": lambda x, a, s: torch.tanh(x[0]),
    "relu": lambda x, a, s: torch.relu(x[0]),
    "leaky_relu": lambda x, a, s: F.leaky_relu(x[0], a.get("negative_slope", 0.01)),
    "gelu": lambda x, a, s: F.gelu(x[0], approximate=a.get("approximate", "none")),
    "softmax": lambda x, a, s: torch.softmax(x[0], a["dim"]),
    "log_softmax": lambda x, a, s: torch.log_softmax(x[0], a["dim"]),
    # losses
    "cross_entropy": lambda x, a, s: F.cross_entropy(
        x[0], x[1], weight=by_name(x, s, "weight"), ignore_index=a.get("ignore_index", -100),
        reduction=a.get("reduction", "mean"), label_smoothing=a.get("label_smoothing", 0.0)),
    "nll_loss": lambda x, a, s: F.nll_loss(
        x[0], x[1], weight=by_name(x, s, "weight"), ignore_index=a.get("ignore_index", -100),
        reduction=a.get("reduction", "mean")),
    "mse_loss": lambda x, a, s: F.mse_loss(x[0], x[1], reduction=a.get("reduction", "mean")),
    "binary_cross_entropy_with_logits": lambda x, a, s: F.binary_cross_entropy_with_logits(
        x[0], x[1], weight=by_name(x, s, "weight"), pos_weight=by_name(x, s, "pos_weight"),
        reduction=a.get("reduction", "mean")),
    # regularisation, embeddings, normalisation
    "dropout": lambda x, a, s: F.dropout(x[0], a["p"], training=a["training"]),
    "relu_dropout": lambda x, a, s: F.dropout(F.relu(x[0]), a["p"], training=a["training"]),
    "embedding": lambda x, a, s: F.embedding(x[1], x[0], padding_idx=a.get("padding_idx")),
    "layer_norm": lambda x, a, s: F.layer_norm(x[0], a["normalized_shape"], by_name(x, s, "weight"),
                                               by_name(x, s, "bias"), eps=a.get("eps", 1e-5)),
    "batch_norm": _bn,
    # convolution and pooling
    "conv1d": lambda x, a, s: F.conv1d(x[0], x[1], x[2] if len(x) > 2 else None, stride=a.get("stride", 1),
                                       padding=a.get("padding", 0), dilation=a.get("dilation", 1),
                                       groups=a.get("groups", 1)),
    "conv2d": lambda x, a, s: F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, stride=a.get("stride", [1, 1]),
                                       padding=a.get("padding", [0, 0]), dilation=a.get("dilation", [1, 1]),
                                       groups=a.get("groups", 1)),
    # inputs x (B, T, E), then (weight, bias) per width: cat_i amax_t relu(conv1d(x^T, w_i, b_i))
    "conv1d_max_over_time": lambda x, a, s: torch.cat(
        [F.relu(F.conv1d(x[0].transpose(1, 2), x[i], x[i + 1])).amax(dim=2) for i in range(1, len(x), 2)], 1),
    "max_pool2d": lambda x, a, s: F.max_pool2d(x[0], a["kernel_size"], _pool_stride(a), a.get("padding", [0, 0]),
                                               ceil_mode=a.get("ceil_mode", False)),
    "avg_pool2d": lambda x, a, s: F.avg_pool2d(x[0], a["kernel_size"], _pool_stride(a), a.get("padding", [0, 0]),
                                               ceil_mode=a.get("ceil_mode", False),
                                               count_include_pad=a.get("count_include_pad", True)),
    # attention
    "scaled_dot_product_attention": _sdpa,
    "packed_scaled_dot_product_attention": _packed_sdpa,
    # joining, splitting, indexing
    "cat": lambda x, a, s: torch.cat(x, a.get("dim", 0)),
    "stack": lambda x, a, s: torch.stack(x, a.get("dim", 0)),
    "split_size": lambda x, a, s: tuple(torch.split(x[0], a["split_size"], a.get("dim", 0))),
    "split_sizes": lambda x, a, s: tuple(torch.split(x[0], a["sizes"], a.get("dim", 0))),
    "chunk": lambda x, a, s: tuple(torch.chunk(x[0], a["chunks"], a.get("dim", 0))),
    "gather": lambda x, a, s: torch.gather(x[0], a["dim"], x[1]),
    "index_select": lambda x, a, s: torch.index_select(x[0], a["dim"], x[1]),
    "masked_fill": lambda x, a, s: x[0].masked_fill(x[1], a["value"]),
    "one_hot": lambda x, a, s: F.one_hot(x[0], a["num_classes"]),
    "allclose": lambda x, a, s: torch.tensor(torch.allclose(x[0], x[1], rtol=a.get("rtol", 1e-5), atol=a.get("atol", 1e-8))),
    # comparisons (kBool)
    **{f"{c}": (lambda c: lambda x, a, s: getattr(torch, c)(x[0], x[1]))(c) for c in ["eq", "ne", "lt", "le", "gt", "ge"]},
    **{f"{c}_scalar": (lambda c: lambda x, a, s: getattr(torch, c)(x[0], a["other"]))(c) for c in ["eq", "ne", "lt", "le", "gt", "ge"]},
    # Tensor views and copies (tensor.h)
    "view": lambda x, a, s: x[0].view(*a["shape"]),
    "reshape": lambda x, a, s: x[0].reshape(*a["shape"]),
    "permute": lambda x, a, s: x[0].permute(*a["dims"]),
    "transpose": lambda x, a, s: x[0].transpose(a["dim0"], a["dim1"]),
    "t": lambda x, a, s: x[0].t(),
    "narrow": lambda x, a, s: x[0].narrow(a["dim"], a["start"], a["length"]),
    "slice": lambda x, a, s: apply_view(x[0], [["slice", a["dim"], a["start"], a["end"], a.get("step", 1)]]),
    "select": lambda x, a, s: x[0].select(a["dim"], a["index"]),
    "expand": lambda x, a, s: x[0].expand(*a["shape"]),
    "unsqueeze": lambda x, a, s: x[0].unsqueeze(a["dim"]),
    "squeeze_dim": lambda x, a, s: x[0].squeeze(a["dim"]),
    "squeeze": lambda x, a, s: x[0].squeeze(),
    "flatten": lambda x, a, s: x[0].flatten(a.get("start_dim", 0), a.get("end_dim", -1)),
    "contiguous": lambda x, a, s: x[0].contiguous(),
    "clone": lambda x, a, s: x[0].clone(),
    "to_dtype": lambda x, a, s: x[0].to(DTYPES[a["dtype"]]),
    # in place (tensor.h), forward only: the harness hands the row a private copy
    "add_": lambda x, a, s: x[0].add_(x[1], alpha=a.get("alpha", 1)),
    "mul_": lambda x, a, s: x[0].mul_(x[1]),
    "mul_scalar_": lambda x, a, s: x[0].mul_(a["other"]),
    "div_": lambda x, a, s: x[0].div_(x[1]),
    "clamp_": lambda x, a, s: x[0].clamp_(a["min"], a["max"]),
    "masked_fill_": lambda x, a, s: x[0].masked_fill_(x[1], a["value"]),
    "copy_": lambda x, a, s: x[0].copy_(x[1]),
    "fill_": lambda x, a, s: x[0].fill_(a["value"]),
    "zero_": lambda x, a, s: x[0].zero_(),
}

# Ops whose outputs are not compared against a fixture: (reason) — checked in C++ another way.
NOT_BY_FIXTURE = {"dropout": "training mode is random: statistical test in tests/test_ops_table.cc",
                  "relu_dropout": "training mode is random: equal to dropout(relu(x)) bit for bit, tests/test_nn_ops.cc"}
# (scaled_dot_product_attention's dropout_p > 0 is random too: tests/test_attention.cc)

# ------------------------------------------------------------------------------------------- cases
CASES = []  # (name, op, inputs, args, rtol, atol)
LOOSE = 1e-4  # matmul / conv / long sums


def case(name, op, inputs, args=None, rtol=1e-5, atol=1e-5):
    assert re.fullmatch(r"[A-Za-z0-9_]+", name), name
    assert op in OPS, op
    assert all(c[0] != name for c in CASES), f"duplicate case {name}"
    CASES.append((name, op, inputs, args or {}, rtol, atol))


def T(*shape):
    return [["transpose", 0, 1]] if len(shape) == 0 else [["transpose", *shape]]


def define_cases():
    # ---- binary elementwise
    for op in ["add", "sub", "mul", "div", "maximum", "minimum"]:
        b = "pos" if op == "div" else "randn"
        case(f"{op}_same", op, [In([3, 4]), In([3, 4], b)])
        case(f"{op}_bcast", op, [In([2, 1, 4]), In([3, 1], b)])
        case(f"{op}_bcast_scalar0d", op, [In([3, 4]), In([], b)])
        case(f"{op}_noncontig", op, [In([4, 3], view=T()), In([3, 8], b, view=[["slice", 1, 0, 8, 2]])])
        case(f"{op}_bcast_noncontig", op, [In([5, 2, 3], view=[["permute", [1, 2, 0]]]), In([3, 1], b)])
    case("add_alpha", "add", [In([3, 4]), In([4])], {"alpha": 2.5})
    case("sub_alpha", "sub", [In([2, 3]), In([2, 1])], {"alpha": -0.5})
    case("pow_same", "pow", [In([3, 4], "pos"), In([3, 4])])
    case("pow_bcast", "pow", [In([2, 1, 4], "pos"), In([3, 1], "uniform", low=-1.0, high=2.0)])
    case("pow_noncontig", "pow", [In([4, 3], "pos", view=T()), In([3, 4])])
    case("add_int64", "add", [In([3, 4], "int", "int64", high=10), In([4], "int", "int64", high=10)])
    case("mul_bool_float_promote", "mul", [In([3, 4]), In([3, 4], "bool", "bool")])
    case("add_f32_f64_promote", "add", [In([3, 4]), In([4], dtype="float64")])
    for op, other in [("add_scalar", 1.5), ("sub_scalar", -2.0), ("mul_scalar", 3.0), ("div_scalar", 4.0),
                      ("rsub_scalar", 2.0), ("rdiv_scalar", 3.0)]:
        kind = "pos" if op == "rdiv_scalar" else "randn"
        case(f"{op}", op, [In([2, 3, 4], kind)], {"other": other})
        case(f"{op}_noncontig", op, [In([4, 6], kind, view=T())], {"other": other})
    # attn: "a scalar operand takes the tensor's dtype" (ops.h), so int64 + 3 stays int64 (as in torch
    # with an int scalar; torch would promote int64 + 3.0 to float32).
    case("add_scalar_int64", "add_scalar", [In([5], "int", "int64", high=10)], {"other": 3})
    for e in [2.0, 3.0, 0.5, -1.5]:
        tag = str(e).replace(".", "p").replace("-", "m")
        case(f"pow_scalar_{tag}", "pow_scalar", [In([3, 4], "pos" if e != int(e) else "randn")], {"exponent": e})
    case("pow_scalar_noncontig", "pow_scalar", [In([4, 3], view=T())], {"exponent": 3.0})

    # ---- unary elementwise
    unary = {"neg": "randn", "exp": "randn", "log": "pos", "sqrt": "pos", "rsqrt": "pos", "abs": "away0",
             "sin": "randn", "cos": "randn", "square": "randn", "sigmoid": "randn", "tanh": "randn",
             "relu": "away0"}
    for op, kind in unary.items():
        case(f"{op}", op, [In([3, 5], kind)])
        case(f"{op}_noncontig", op, [In([4, 6], kind, view=[["transpose", 0, 1], ["slice", 0, 1, 6, 2]])])
        case(f"{op}_0d", op, [In([], kind)])
    case("leaky_relu", "leaky_relu", [In([3, 5], "away0")])
    case("leaky_relu_slope", "leaky_relu", [In([3, 5], "away0")], {"negative_slope": 0.2})
    case("leaky_relu_noncontig", "leaky_relu", [In([5, 3], "away0", view=T())], {"negative_slope": 0.1})
    case("gelu", "gelu", [In([4, 5], "uniform", low=-4.0, high=4.0)])
    case("gelu_tanh", "gelu", [In([4, 5], "uniform", low=-4.0, high=4.0)], {"approximate": "tanh"})
    case("gelu_noncontig", "gelu", [In([5, 4], view=T())])
    case("gelu_tanh_noncontig", "gelu", [In([5, 4], view=T())], {"approximate": "tanh"})
    case("clamp_both", "clamp", [In([4, 5], "uniform", low=-2.0, high=2.0)], {"min": -0.5, "max": 0.75})
    case("clamp_min", "clamp", [In([4, 5])], {"min": 0.25, "max": None})
    case("clamp_max", "clamp", [In([4, 5])], {"min": None, "max": -0.1})
    case("clamp_noncontig", "clamp", [In([5, 4], view=T())], {"min": -0.3, "max": 0.3})
    case("where", "where", [In([3, 4], "bool", "bool"), In([3, 4]), In([3, 4])])
    case("where_bcast", "where", [In([3, 1], "bool", "bool"), In([2, 1, 4]), In([4])])
    case("where_noncontig", "where", [In([4, 3], "bool", "bool", view=T()), In([4, 3], view=T()), In([3, 4])])
    case("where_scalar", "where_scalar", [In([3, 4], "bool", "bool"), In([3, 4])], {"other": -1.5})
    case("where_scalar_bcast", "where_scalar", [In([4], "bool", "bool"), In([3, 1])], {"other": 2.0})
    for c in ["eq", "ne", "lt", "le", "gt", "ge"]:
        case(f"{c}", c, [In([3, 4], "intf"), In([3, 4], "intf")])
        case(f"{c}_bcast", c, [In([2, 1, 4], "intf"), In([3, 1], "intf")])
        case(f"{c}_noncontig", c, [In([4, 3], "intf", view=T()), In([3, 4], "intf")])
        case(f"{c}_scalar", f"{c}_scalar", [In([3, 4], "intf")], {"other": 1.0})
        case(f"{c}_int64", c, [In([3, 4], "int", "int64", high=3), In([4], "int", "int64", high=3)])
    case("logical_not", "logical_not", [In([3, 4], "bool", "bool")])
    case("logical_not_float", "logical_not", [In([3, 4], "intf")])
    for op in ["logical_and", "logical_or"]:
        case(op, op, [In([3, 4], "bool", "bool"), In([3, 4], "bool", "bool")])
        case(f"{op}_bcast", op, [In([2, 1, 4], "bool", "bool"), In([3, 1], "bool", "bool")])

    # ---- reductions
    for op in ["sum", "mean", "amax", "amin"]:
        case(f"{op}_all", op, [In([3, 4, 5])])
        case(f"{op}_all_keepdim", op, [In([3, 4])], {"dims": [], "keepdim": True})
        case(f"{op}_dim0", op, [In([3, 4, 5])], {"dims": [0]})
        case(f"{op}_dim1_keepdim", op, [In([3, 4, 5])], {"dims": [1], "keepdim": True})
        case(f"{op}_dimneg", op, [In([3, 4, 5])], {"dims": [-1]})
        case(f"{op}_dims02", op, [In([3, 4, 5])], {"dims": [0, 2]})
        case(f"{op}_dims_neg_keepdim", op, [In([3, 4, 5])], {"dims": [-1, -3], "keepdim": True})
        case(f"{op}_noncontig", op, [In([5, 4, 3], view=[["permute", [2, 0, 1]]])], {"dims": [1]})
        case(f"{op}_noncontig_all", op, [In([6, 4], view=[["slice", 0, 1, 6, 2], ["t"]])])
        case(f"{op}_0d", op, [In([])])
    case("sum_int64", "sum", [In([3, 4], "int", "int64", high=10)], {"dims": [1]})
    case("sum_long", "sum", [In([4, 300])], {"dims": [1]}, rtol=LOOSE, atol=LOOSE)
    for op in ["max_all", "min_all"]:
        case(op, op, [In([3, 4, 5])])
        case(f"{op}_noncontig", op, [In([4, 5], view=T())])
    for op in ["max_dim", "min_dim"]:
        case(f"{op}0", op, [In([3, 4, 5])], {"dim": 0})
        case(f"{op}_neg_keepdim", op, [In([3, 4, 5])], {"dim": -1, "keepdim": True})
        case(f"{op}_noncontig", op, [In([5, 4], view=T())], {"dim": 1})
    for op in ["argmax", "argmin"]:
        case(f"{op}1", op, [In([3, 4, 5])], {"dim": 1})
        case(f"{op}_neg_keepdim", op, [In([3, 4, 5])], {"dim": -1, "keepdim": True})
        case(f"{op}_noncontig", op, [In([5, 4], view=T())], {"dim": 0})
    for op in ["var", "std"]:
        case(f"{op}_all", op, [In([3, 4, 5])])
        case(f"{op}_dim1", op, [In([3, 4, 5])], {"dims": [1]})
        case(f"{op}_dimneg_keepdim", op, [In([3, 4, 5])], {"dims": [-1], "keepdim": True})
        case(f"{op}_dims_corr0", op, [In([3, 4, 5])], {"dims": [0, 2], "correction": 0})
        case(f"{op}_corr2", op, [In([3, 6])], {"dims": [1], "correction": 2})
        case(f"{op}_noncontig", op, [In([5, 4], view=T())], {"dims": [0]})

    # ---- linear algebra
    L = dict(rtol=LOOSE, atol=LOOSE)
    case("matmul_1d_1d", "matmul", [In([5]), In([5])], **L)
    case("matmul_2d_1d", "matmul", [In([3, 5]), In([5])], **L)
    case("matmul_1d_2d", "matmul", [In([5]), In([5, 4])], **L)
    case("matmul_2d_2d", "matmul", [In([3, 5]), In([5, 4])], **L)
    case("matmul_batched", "matmul", [In([2, 3, 5]), In([2, 5, 4])], **L)
    case("matmul_bcast_batch", "matmul", [In([2, 1, 3, 5]), In([3, 5, 4])], **L)
    case("matmul_3d_2d", "matmul", [In([2, 3, 5]), In([5, 4])], **L)
    case("matmul_1d_3d", "matmul", [In([5]), In([2, 5, 4])], **L)
    case("matmul_3d_1d", "matmul", [In([2, 3, 5]), In([5])], **L)
    case("matmul_noncontig", "matmul", [In([5, 3], view=T()), In([4, 5], view=T())], **L)
    case("matmul_batched_noncontig", "matmul", [In([2, 5, 3], view=T(1, 2)), In([5, 2, 4], view=T(0, 1))], **L)
    case("mm", "mm", [In([3, 5]), In([5, 4])], **L)
    case("mm_noncontig", "mm", [In([5, 3], view=T()), In([5, 8], view=[["slice", 1, 0, 8, 2]])], **L)
    case("bmm", "bmm", [In([2, 3, 5]), In([2, 5, 4])], **L)
    case("bmm_noncontig", "bmm", [In([2, 5, 3], view=T(1, 2)), In([5, 2, 4], view=T(0, 1))], **L)
    case("linear", "linear", [In([4, 5]), In([3, 5]), In([3])], **L)
    case("linear_nobias", "linear", [In([4, 5]), In([3, 5])], **L)
    case("linear_3d", "linear", [In([2, 4, 5]), In([3, 5]), In([3])], **L)
    case("linear_1d", "linear", [In([5]), In([3, 5]), In([3])], **L)
    case("linear_noncontig", "linear", [In([5, 4], view=T()), In([5, 3], view=T()), In([3])], **L)

    # ---- softmax
    for op in ["softmax", "log_softmax"]:
        case(f"{op}_last", op, [In([3, 5])], {"dim": -1})
        case(f"{op}_dim0", op, [In([3, 5])], {"dim": 0})
        case(f"{op}_3d_mid", op, [In([2, 3, 4])], {"dim": 1})
        case(f"{op}_large", op, [In([2, 6], "uniform", low=50.0, high=60.0)], {"dim": 1})
        case(f"{op}_noncontig", op, [In([5, 3], view=T())], {"dim": -1})

    # ---- losses
    N, C = 6, 5
    logits = lambda **kw: In([N, C], **kw)
    tgt = lambda high=C, shape=(N,): In(list(shape), "int", "int64", high=high)
    w = lambda n=C: In([n], "pos", grad=False, name="weight")
    case("cross_entropy", "cross_entropy", [logits(), tgt()])
    case("cross_entropy_sum", "cross_entropy", [logits(), tgt()], {"reduction": "sum"})
    case("cross_entropy_none", "cross_entropy", [logits(), tgt()], {"reduction": "none"})
    case("cross_entropy_smoothing", "cross_entropy", [logits(), tgt()], {"label_smoothing": 0.1})
    case("cross_entropy_ignore", "cross_entropy", [logits(), In([N], "value", "int64", value=[0, 3, -100, 2, -100, 4])])
    case("cross_entropy_ignore_custom", "cross_entropy", [logits(), In([N], "value", "int64", value=[1, 2, 2, 0, 4, 2])],
         {"ignore_index": 2})
    case("cross_entropy_ignore_none", "cross_entropy", [logits(), In([N], "value", "int64", value=[0, 3, -100, 2, -100, 4])],
         {"reduction": "none"})
    case("cross_entropy_weight", "cross_entropy", [logits(), tgt(), w()])
    case("cross_entropy_weight_sum", "cross_entropy", [logits(), tgt(), w()], {"reduction": "sum"})
    case("cross_entropy_weight_smoothing_ignore", "cross_entropy",
         [logits(), In([N], "value", "int64", value=[0, 3, -100, 2, 1, 4]), w()],
         {"label_smoothing": 0.2, "ignore_index": -100})
    case("cross_entropy_smoothing_ignore_sum", "cross_entropy",
         [logits(), In([N], "value", "int64", value=[0, 3, -100, 2, 1, 4])], {"label_smoothing": 0.3, "reduction": "sum"})
    case("cross_entropy_spatial", "cross_entropy", [In([2, C, 3, 2]), tgt(shape=(2, 3, 2))])
    case("cross_entropy_spatial_weight_none", "cross_entropy", [In([2, C, 3]), tgt(shape=(2, 3)), w()],
         {"reduction": "none"})
    case("cross_entropy_noncontig", "cross_entropy", [In([C, N], view=T()), tgt()])
    case("nll_loss", "nll_loss", [logits(), tgt()])
    case("nll_loss_sum", "nll_loss", [logits(), tgt()], {"reduction": "sum"})
    case("nll_loss_none", "nll_loss", [logits(), tgt()], {"reduction": "none"})
    case("nll_loss_weight", "nll_loss", [logits(), tgt(), w()])
    case("nll_loss_ignore", "nll_loss", [logits(), In([N], "value", "int64", value=[1, -100, 2, 0, 4, 3])])
    case("nll_loss_weight_ignore_custom", "nll_loss", [logits(), In([N], "value", "int64", value=[1, 3, 2, 0, 3, 3]), w()],
         {"ignore_index": 3})
    case("nll_loss_spatial", "nll_loss", [In([2, C, 3]), tgt(shape=(2, 3))])
    for r in ["mean", "sum", "none"]:
        case(f"mse_loss_{r}", "mse_loss", [In([3, 4]), In([3, 4])], {"reduction": r})
    case("mse_loss_noncontig", "mse_loss", [In([4, 3], view=T()), In([3, 4])])
    for r in ["mean", "sum", "none"]:
        case(f"bce_logits_{r}", "binary_cross_entropy_with_logits",
             [In([3, 4], "uniform", low=-6.0, high=6.0), In([3, 4], "uniform", grad=False)], {"reduction": r})
    case("bce_logits_weight", "binary_cross_entropy_with_logits",
         [In([3, 4]), In([3, 4], "uniform", grad=False), In([4], "pos", grad=False, name="weight")])
    case("bce_logits_pos_weight", "binary_cross_entropy_with_logits",
         [In([3, 4]), In([3, 4], "bool", "float32", grad=False), In([4], "pos", grad=False, name="pos_weight")])
    case("bce_logits_weight_pos_weight_sum", "binary_cross_entropy_with_logits",
         [In([3, 4]), In([3, 4], "uniform", grad=False), In([3, 1], "pos", grad=False, name="weight"),
          In([4], "pos", grad=False, name="pos_weight")], {"reduction": "sum"})
    case("bce_logits_large", "binary_cross_entropy_with_logits",
         [In([2, 3], "uniform", low=-80.0, high=80.0), In([2, 3], "uniform", grad=False)])

    # ---- dropout (deterministic modes only)
    case("dropout_eval", "dropout", [In([3, 4])], {"p": 0.5, "training": False})
    case("dropout_p0", "dropout", [In([3, 4])], {"p": 0.0, "training": True})
    case("relu_dropout_eval", "relu_dropout", [In([3, 4])], {"p": 0.5, "training": False})
    case("relu_dropout_p0", "relu_dropout", [In([4, 5])], {"p": 0.0, "training": True})

    # ---- embedding, normalisation
    case("embedding", "embedding", [In([7, 3]), In([5], "int", "int64", high=7)])
    case("embedding_2d_repeat", "embedding", [In([4, 3]), In([2, 5], "value", "int64", value=[[0, 1, 1, 3, 0], [3, 3, 2, 0, 1]])])
    case("embedding_int32", "embedding", [In([6, 2]), In([4], "int", "int32", high=6)])
    case("embedding_padding", "embedding", [In([5, 3]), In([2, 4], "value", "int64", value=[[0, 2, 1, 2], [4, 2, 0, 3]])],
         {"padding_idx": 2})
    case("embedding_noncontig_weight", "embedding", [In([3, 6], view=T()), In([4], "int", "int64", high=6)])
    nw = lambda *s: In(list(s), "pos", name="weight")
    nb = lambda *s: In(list(s), name="bias")
    case("layer_norm", "layer_norm", [In([4, 6]), nw(6), nb(6)], {"normalized_shape": [6]})
    case("layer_norm_noaffine", "layer_norm", [In([2, 3, 5])], {"normalized_shape": [5]})
    case("layer_norm_2dims", "layer_norm", [In([2, 3, 4]), nw(3, 4), nb(3, 4)], {"normalized_shape": [3, 4]})
    case("layer_norm_weight_only", "layer_norm", [In([4, 6]), nw(6)], {"normalized_shape": [6], "eps": 1e-3})
    case("layer_norm_noncontig", "layer_norm", [In([6, 4], view=T()), nw(6), nb(6)], {"normalized_shape": [6]})
    rm = lambda c: In([c], "randn", grad=False, name="running_mean")
    rv = lambda c: In([c], "pos", grad=False, name="running_var")
    case("batch_norm_train_2d", "batch_norm", [In([6, 3]), rm(3), rv(3), nw(3), nb(3)], {"training": True})
    case("batch_norm_train_4d", "batch_norm", [In([3, 2, 3, 2]), rm(2), rv(2), nw(2), nb(2)],
         {"training": True, "momentum": 0.2, "eps": 1e-3})
    case("batch_norm_train_nostats_noaffine", "batch_norm", [In([4, 3, 5])], {"training": True})
    case("batch_norm_eval", "batch_norm", [In([4, 3, 2]), rm(3), rv(3), nw(3), nb(3)], {"training": False})
    case("batch_norm_eval_noaffine", "batch_norm", [In([4, 3]), rm(3), rv(3)], {"training": False})
    case("batch_norm_train_noncontig", "batch_norm", [In([3, 5], view=T()), rm(3), rv(3), nw(3), nb(3)],
         {"training": True})

    # ---- convolution and pooling
    case("conv1d", "conv1d", [In([2, 3, 7]), In([4, 3, 3]), In([4])], **L)
    case("conv1d_nobias", "conv1d", [In([2, 3, 7]), In([4, 3, 3])], **L)
    case("conv1d_stride_pad", "conv1d", [In([2, 3, 8]), In([4, 3, 3]), In([4])], {"stride": 2, "padding": 1}, **L)
    case("conv1d_dilation", "conv1d", [In([1, 2, 9]), In([3, 2, 3]), In([3])], {"dilation": 2, "padding": 2}, **L)
    case("conv1d_groups", "conv1d", [In([2, 4, 6]), In([6, 2, 2]), In([6])], {"groups": 2}, **L)
    case("conv1d_noncontig", "conv1d", [In([2, 7, 3], view=T(1, 2)), In([4, 3, 3]), In([4])], **L)
    case("conv2d", "conv2d", [In([2, 3, 5, 5]), In([4, 3, 3, 3]), In([4])], **L)
    case("conv2d_nobias", "conv2d", [In([1, 2, 4, 5]), In([3, 2, 2, 3])], **L)
    case("conv2d_stride_pad", "conv2d", [In([2, 2, 6, 5]), In([3, 2, 3, 3]), In([3])],
         {"stride": [2, 1], "padding": [1, 2]}, **L)
    case("conv2d_dilation", "conv2d", [In([1, 2, 7, 7]), In([2, 2, 3, 3]), In([2])],
         {"dilation": [2, 3], "padding": [1, 1]}, **L)
    case("conv2d_groups", "conv2d", [In([2, 4, 5, 5]), In([6, 2, 3, 3]), In([6])], {"groups": 2, "padding": [1, 1]}, **L)
    case("conv2d_depthwise", "conv2d", [In([1, 3, 5, 4]), In([3, 1, 3, 3]), In([3])],
         {"groups": 3, "stride": [2, 2], "padding": [1, 1]}, **L)
    case("conv2d_all", "conv2d", [In([1, 4, 8, 7]), In([4, 2, 3, 2]), In([4])],
         {"stride": [2, 3], "padding": [2, 1], "dilation": [2, 1], "groups": 2}, **L)
    case("conv2d_noncontig", "conv2d", [In([2, 5, 5, 3], view=[["permute", [0, 3, 1, 2]]]), In([4, 3, 3, 3]), In([4])], **L)
    case("conv2d_1x1", "conv2d", [In([2, 3, 4, 4]), In([5, 3, 1, 1]), In([5])], **L)
    case("max_pool2d", "max_pool2d", [In([2, 3, 4, 6])], {"kernel_size": [2, 2]})
    case("max_pool2d_k3s2p1", "max_pool2d", [In([1, 2, 7, 7])], {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]})
    case("max_pool2d_ceil", "max_pool2d", [In([1, 2, 5, 7])], {"kernel_size": [2, 2], "ceil_mode": True})
    case("max_pool2d_ceil_pad", "max_pool2d", [In([1, 1, 6, 6])],
         {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True})
    case("max_pool2d_rect_stride", "max_pool2d", [In([2, 1, 6, 7])], {"kernel_size": [2, 3], "stride": [1, 2]})
    case("max_pool2d_overlap", "max_pool2d", [In([1, 2, 5, 5])], {"kernel_size": [3, 3], "stride": [1, 1]})
    case("max_pool2d_noncontig", "max_pool2d", [In([1, 2, 6, 4], view=T(2, 3))], {"kernel_size": [2, 2]})
    case("avg_pool2d", "avg_pool2d", [In([2, 3, 4, 6])], {"kernel_size": [2, 2]})
    case("avg_pool2d_k3s2p1", "avg_pool2d", [In([1, 2, 7, 7])], {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]})
    case("avg_pool2d_nopadcount", "avg_pool2d", [In([1, 2, 7, 7])],
         {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "count_include_pad": False})
    case("avg_pool2d_ceil", "avg_pool2d", [In([1, 2, 5, 7])], {"kernel_size": [2, 2], "ceil_mode": True})
    case("avg_pool2d_ceil_pad", "avg_pool2d", [In([1, 1, 6, 6])],
         {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True})
    case("avg_pool2d_ceil_pad_nocount", "avg_pool2d", [In([1, 1, 6, 6])],
         {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True, "count_include_pad": False})
    case("avg_pool2d_rect_stride", "avg_pool2d", [In([2, 1, 6, 7])], {"kernel_size": [2, 3], "stride": [1, 2]})
    case("avg_pool2d_noncontig", "avg_pool2d", [In([1, 2, 6, 4], view=T(2, 3))], {"kernel_size": [2, 2]})

    # ---- joining, splitting, indexing
    case("cat_dim0", "cat", [In([2, 3]), In([1, 3]), In([3, 3])], {"dim": 0})
    case("cat_dim1", "cat", [In([2, 3]), In([2, 1]), In([2, 2])], {"dim": 1})
    case("cat_dimneg", "cat", [In([2, 3, 2]), In([2, 3, 3])], {"dim": -1})
    case("cat_noncontig", "cat", [In([3, 2], view=T()), In([2, 4])], {"dim": 1})
    case("cat_single", "cat", [In([2, 3])], {"dim": 0})
    case("stack_dim0", "stack", [In([2, 3]), In([2, 3]), In([2, 3])], {"dim": 0})
    case("stack_dim1", "stack", [In([2, 3]), In([2, 3])], {"dim": 1})
    case("stack_dimneg", "stack", [In([2, 3]), In([2, 3])], {"dim": -1})
    case("stack_noncontig", "stack", [In([3, 2], view=T()), In([2, 3])], {"dim": 0})
    case("split_size", "split_size", [In([7, 3])], {"split_size": 3, "dim": 0})
    case("split_size_dim1", "split_size", [In([2, 6])], {"split_size": 2, "dim": 1})
    case("split_size_dimneg_noncontig", "split_size", [In([5, 3], view=T())], {"split_size": 2, "dim": -1})
    case("split_sizes", "split_sizes", [In([6, 2])], {"sizes": [1, 3, 2], "dim": 0})
    case("split_sizes_dim1", "split_sizes", [In([2, 7])], {"sizes": [4, 0, 3], "dim": 1})
    case("chunk", "chunk", [In([7, 2])], {"chunks": 3, "dim": 0})
    case("chunk_even_dim1", "chunk", [In([2, 6])], {"chunks": 2, "dim": 1})
    case("chunk_fewer", "chunk", [In([5, 2])], {"chunks": 4, "dim": 0})
    case("gather_dim1", "gather", [In([3, 5]), In([3, 4], "int", "int64", high=5)], {"dim": 1})
    case("gather_dim0", "gather", [In([4, 3]), In([6, 3], "int", "int64", high=4)], {"dim": 0})
    case("gather_3d_dimneg", "gather", [In([2, 3, 4]), In([2, 2, 4], "int", "int64", high=3)], {"dim": -2})
    case("gather_small_index", "gather", [In([4, 5]), In([2, 3], "int", "int64", high=5)], {"dim": 1})
    case("gather_noncontig", "gather", [In([5, 3], view=T()), In([3, 5], "int", "int64", high=5)], {"dim": 1})
    case("index_select_dim0", "index_select", [In([5, 3]), In([4], "value", "int64", value=[4, 0, 4, 2])], {"dim": 0})
    case("index_select_dim1", "index_select", [In([2, 5, 3]), In([3], "int", "int64", high=5)], {"dim": 1})
    case("index_select_dimneg_int32", "index_select", [In([3, 4]), In([5], "int", "int32", high=4)], {"dim": -1})
    case("index_select_noncontig", "index_select", [In([3, 5], view=T()), In([2], "value", "int64", value=[2, 0])], {"dim": 1})
    case("masked_fill", "masked_fill", [In([3, 4]), In([3, 4], "bool", "bool")], {"value": -1e9})
    case("masked_fill_bcast", "masked_fill", [In([2, 3, 4]), In([3, 1], "bool", "bool")], {"value": 0.5})
    case("masked_fill_noncontig", "masked_fill", [In([4, 3], view=T()), In([4], "bool", "bool")], {"value": 2.0})
    case("one_hot", "one_hot", [In([5], "int", "int64", high=4)], {"num_classes": 4})
    case("one_hot_2d", "one_hot", [In([2, 3], "int", "int64", high=3)], {"num_classes": 5})
    case("allclose_true", "allclose", [In([3, 4], "value", value=[[1.0, 2.0, 3.0, 4.0]] * 3),
                                       In([3, 4], "value", value=[[1.0, 2.0 + 1e-6, 3.0, 4.0]] * 3)])
    case("allclose_false", "allclose", [In([3, 4], "value", value=[[1.0, 2.0, 3.0, 4.0]] * 3),
                                        In([3, 4], "value", value=[[1.0, 2.1, 3.0, 4.0]] * 3)])
    case("allclose_atol", "allclose", [In([2], "value", value=[0.0, 1.0]), In([2], "value", value=[0.01, 1.0])],
         {"rtol": 0.0, "atol": 0.1})

    # ---- Tensor views and copies
    case("view", "view", [In([3, 4])], {"shape": [2, 6]})
    case("view_infer", "view", [In([2, 3, 4])], {"shape": [-1, 4]})
    case("reshape", "reshape", [In([3, 4])], {"shape": [4, 3]})
    case("reshape_noncontig", "reshape", [In([4, 3], view=T())], {"shape": [-1]})
    case("reshape_infer", "reshape", [In([2, 3, 4])], {"shape": [3, -1, 2]})
    case("permute", "permute", [In([2, 3, 4])], {"dims": [2, 0, 1]})
    case("permute_neg", "permute", [In([2, 3, 4])], {"dims": [-1, 1, 0]})
    case("transpose", "transpose", [In([2, 3, 4])], {"dim0": 0, "dim1": 2})
    case("transpose_neg", "transpose", [In([2, 3, 4])], {"dim0": -1, "dim1": -2})
    case("t", "t", [In([3, 4])])
    case("narrow", "narrow", [In([5, 4])], {"dim": 0, "start": 1, "length": 3})
    case("narrow_dimneg", "narrow", [In([3, 6])], {"dim": -1, "start": 2, "length": 2})
    case("slice_step", "slice", [In([7, 3])], {"dim": 0, "start": 1, "end": 7, "step": 2})
    case("slice_dim1", "slice", [In([3, 6])], {"dim": 1, "start": 0, "end": 4, "step": 1})
    case("slice_noncontig", "slice", [In([6, 4], view=T())], {"dim": 1, "start": 1, "end": 6, "step": 3})
    case("select", "select", [In([3, 4])], {"dim": 0, "index": 1})
    case("select_dimneg", "select", [In([2, 3, 4])], {"dim": -1, "index": 2})
    case("select_negindex", "select", [In([3, 4])], {"dim": 1, "index": -1})
    case("expand", "expand", [In([3, 1])], {"shape": [3, 4]})
    case("expand_newdims", "expand", [In([1, 4])], {"shape": [2, 3, -1]})
    case("expand_noncontig", "expand", [In([1, 3], view=T())], {"shape": [3, 5]})
    case("unsqueeze", "unsqueeze", [In([3, 4])], {"dim": 1})
    case("unsqueeze_neg", "unsqueeze", [In([3, 4])], {"dim": -1})
    case("squeeze_dim", "squeeze_dim", [In([3, 1, 4])], {"dim": 1})
    case("squeeze_dim_noop", "squeeze_dim", [In([3, 1, 4])], {"dim": 0})
    case("squeeze_dim_neg", "squeeze_dim", [In([3, 4, 1])], {"dim": -1})
    case("squeeze_all", "squeeze", [In([1, 3, 1, 4])])
    case("flatten", "flatten", [In([2, 3, 4])])
    case("flatten_range", "flatten", [In([2, 3, 4, 2])], {"start_dim": 1, "end_dim": 2})
    case("flatten_noncontig", "flatten", [In([4, 3], view=T())], {"start_dim": 0, "end_dim": -1})
    case("contiguous", "contiguous", [In([4, 3], view=T())])
    case("contiguous_slice", "contiguous", [In([6, 3], view=[["slice", 0, 0, 6, 2]])])
    case("clone", "clone", [In([3, 4])])
    case("clone_noncontig", "clone", [In([4, 3], view=T())])
    case("to_float64", "to_dtype", [In([3, 4])], {"dtype": "float64"})
    case("to_float32_from_f64", "to_dtype", [In([3, 4], dtype="float64")], {"dtype": "float32"})
    case("to_int64", "to_dtype", [In([3, 4], "uniform", low=-5.0, high=5.0, grad=False)], {"dtype": "int64"})

    # ---- in place (forward only)
    ng = dict(grad=False)
    case("add__", "add_", [In([3, 4], **ng), In([4], **ng)], {"alpha": 2.0})
    case("mul__", "mul_", [In([3, 4], **ng), In([3, 1], **ng)])
    case("mul_scalar__", "mul_scalar_", [In([3, 4], **ng)], {"other": -2.5})
    case("div__", "div_", [In([3, 4], **ng), In([4], "pos", **ng)])
    case("clamp__", "clamp_", [In([3, 4], **ng)], {"min": -0.5, "max": 0.5})
    case("masked_fill__", "masked_fill_", [In([3, 4], **ng), In([4], "bool", "bool")], {"value": 7.0})
    case("copy__bcast", "copy_", [In([3, 4], **ng), In([4], **ng)])
    case("copy__convert", "copy_", [In([3, 4], **ng), In([3, 4], "int", "int64", high=9)])
    case("fill__", "fill_", [In([2, 3], **ng)], {"value": 3.25})
    case("zero__", "zero_", [In([2, 3], **ng)])
    case("add__noncontig_self", "add_", [In([4, 3], view=T(), **ng), In([3, 4], **ng)])

    # ---- fused attention (appended last: earlier cases keep their random inputs)
    sd = "scaled_dot_product_attention"
    qkv = lambda L=5, S=7, D=4, Dv=4: [In([2, 2, L, D]), In([2, 2, S, D]), In([2, 2, S, Dv])]
    case("sdpa", sd, qkv(), **L)
    case("sdpa_causal", sd, qkv(L=6, S=6), {"is_causal": True}, **L)
    case("sdpa_causal_l_ne_s", sd, qkv(L=5, S=7), {"is_causal": True}, **L)
    case("sdpa_bool_mask", sd, qkv() + [In([5, 7], "bool", "bool", name="attn_mask", p=0.75)], **L)
    case("sdpa_float_mask", sd, qkv() + [In([2, 1, 5, 7], grad=False, name="attn_mask")], **L)
    case("sdpa_key_padding", sd, qkv() + [In([2, 7], "bool", "bool", name="key_padding_mask", p=0.3)], **L)
    case("sdpa_bool_mask_key_padding", sd, qkv() + [In([5, 7], "bool", "bool", name="attn_mask", p=0.8),
                                                    In([2, 7], "bool", "bool", name="key_padding_mask", p=0.2)], **L)
    case("sdpa_noncontig", sd, [In([2, 5, 2, 4], view=[["permute", [0, 2, 1, 3]]]),
                                In([7, 2, 2, 4], view=[["permute", [1, 2, 0, 3]]]),
                                In([2, 2, 4, 7], view=T(2, 3))], **L)
    case("sdpa_dv_ne_d", sd, qkv(L=3, S=9, D=5, Dv=3), **L)
    case("sdpa_scale", sd, qkv(), {"scale": 0.3}, **L)
    case("sdpa_long_keys", sd, qkv(L=3, S=70, D=8, Dv=8), {"is_causal": False}, **L)

    # ---- attention on packed projections (appended after the above: their random inputs stay)
    ps = "packed_scaled_dot_product_attention"
    case("packed_sdpa_self", ps, [In([2, 5, 12])],
         {"sources": "qkv", "columns": [0, 4, 8], "num_heads": 2, "embed_dim": 4}, **L)
    case("packed_sdpa_self_causal_permuted_blocks", ps, [In([5, 2, 24], view=[["transpose", 0, 1]])],
         {"sources": "qkv", "columns": [16, 0, 8], "num_heads": 2, "embed_dim": 8, "is_causal": True}, **L)
    case("packed_sdpa_cross_key_padding", ps,
         [In([2, 5, 8]), In([2, 7, 16]), In([2, 7], "bool", "bool", name="key_padding_mask", p=0.3)],
         {"sources": "q_kv", "columns": [0, 0, 8], "num_heads": 4, "embed_dim": 8}, **L)
    case("packed_sdpa_separate_uncovered_columns_mask", ps,
         [In([2, 5, 10]), In([2, 7, 6]), In([2, 7, 9]), In([5, 7], "bool", "bool", name="attn_mask", p=0.75)],
         {"sources": "q_k_v", "columns": [3, 0, 1], "num_heads": 3, "embed_dim": 6}, **L)
    case("packed_sdpa_overlapping_blocks", ps, [In([2, 5, 6])],
         {"sources": "qkv", "columns": [0, 2, 0], "num_heads": 1, "embed_dim": 4, "scale": 0.4}, **L)
    # appended last: the cases above keep their random draws
    case("conv1d_max_over_time", "conv1d_max_over_time",
         [In([3, 9, 4]), In([5, 4, 2]), In([5]), In([6, 4, 3]), In([6]), In([2, 4, 5]), In([2])], **L)
    case("topk_last", "topk", [In([3, 10])], {"k": 4, "dim": -1})
    case("topk_dim0_smallest", "topk", [In([6, 4, 3])], {"k": 2, "dim": 0, "largest": False})
    case("topk_noncontig_all", "topk", [In([5, 4], view=T())], {"k": 5, "dim": 1})


# ------------------------------------------------------------------------------------------ running
def coverage_check():
    """Every function in ops.h and every view in tensor.h has a case (or a stated reason)."""
    ops_h = open(os.path.join(REPO, "include/attn/ops.h")).read()
    names = set(re.findall(r"^(?:Tensor|std::pair<Tensor, Tensor>|std::vector<Tensor>|bool)\s+(\w+)\(", ops_h, re.M))
    tensor_h = open(os.path.join(REPO, "include/attn/tensor.h")).read()
    block = tensor_h.split("// ---- views and copies")[1].split("// ----")[0]
    names |= set(re.findall(r"^\s*Tensor\s+(\w+)\(", block, re.M)) - {"expand_as"}
    have = {c[1] for c in CASES} | set(NOT_BY_FIXTURE)
    missing = sorted(n for n in names if not any(h == n or h.startswith(n + "_") for h in have)
                     and not (n == "to" and "to_dtype" in have))
    if missing:
        sys.exit(f"make_fixtures.py: no case for {missing}: add cases (and rows in tests/op_table.h)")


def to_compute(t):
    return t.double() if t.dtype == torch.float32 else t


def run_case(name, op, specs, args, gen):
    bases = [s.make(gen) for s in specs]
    inputs = []
    for s, b in zip(specs, bases):
        x = apply_view(to_compute(b.clone()), s.view).detach()
        if s.grad:
            x.requires_grad_(True)
        inputs.append(x)
    if op.endswith("_"):
        with torch.no_grad():
            outs = OPS[op](inputs, args, specs)
    else:
        outs = OPS[op](inputs, args, specs)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    tensors, out_meta = {}, []
    for i, (s, b) in enumerate(zip(specs, bases)):
        tensors[f"{name}/in{i}"] = b.contiguous()
    single = len(outs) == 1
    roots, grads = [], []
    for k, o in enumerate(outs):
        key = "out" if single else f"out{k}"
        # In-place ops return their (possibly non-contiguous) self; the result has self's dtype.
        want = specs[0].dtype if op.endswith("_") else None
        stored_dtype = DTYPES[want] if want else (torch.float32 if o.dtype == torch.float64 and not _keeps_f64(op, args, specs) else o.dtype)
        tensors[f"{name}/{key}"] = o.detach().to(stored_dtype).contiguous()
        has_grad = o.requires_grad and o.dtype.is_floating_point
        meta = {"key": key, "dtype": NAME_OF[stored_dtype], "shape": list(o.shape), "grad": has_grad}
        if has_grad:
            g = torch.randn(o.shape, generator=gen).to(stored_dtype)
            tensors[f"{name}/grad_{key}"] = g
            roots.append(o)
            grads.append(g.to(o.dtype))
        out_meta.append(meta)
    if roots:
        torch.autograd.backward(roots, grads)
    in_meta = []
    for i, (s, x) in enumerate(zip(specs, inputs)):
        grad = s.grad and bool(roots)  # no gradient flows when no output carries one (comparisons, ...)
        m = {"dtype": s.dtype, "shape": s.shape, "view": s.view, "grad": grad, "desc": s.desc()}
        if s.name:
            m["name"] = s.name
        if grad:
            g = x.grad if x.grad is not None else torch.zeros_like(x)
            tensors[f"{name}/grad_in{i}"] = g.to(DTYPES[s.dtype]).contiguous()
        in_meta.append(m)
    return tensors, in_meta, out_meta


def _keeps_f64(op, args, specs):
    """float64 results that are float64 in attn too: f64 inputs, or to(float64)."""
    if op == "to_dtype":
        return args["dtype"] == "float64"
    return any(s.dtype == "float64" for s in specs)


def main():
    define_cases()
    coverage_check()
    gen = torch.Generator().manual_seed(20261127)
    all_tensors, meta_cases = {}, []
    for name, op, specs, args, rtol, atol in CASES:
        tensors, in_meta, out_meta = run_case(name, op, specs, args, gen)
        all_tensors.update(tensors)
        meta_cases.append({"name": name, "op": op, "args": args, "inputs": in_meta, "outputs": out_meta,
                           "rtol": rtol, "atol": atol})
    os.makedirs(OUT_DIR, exist_ok=True)
    meta = {"generator": "tests/make_fixtures.py", "torch": torch.__version__,
            "not_by_fixture": NOT_BY_FIXTURE, "cases": meta_cases}
    with open(os.path.join(OUT_DIR, "ops.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    save_file(all_tensors, os.path.join(OUT_DIR, "ops.safetensors"), metadata={"cases_file": "ops.json"})
    size = sum(os.path.getsize(os.path.join(OUT_DIR, p)) for p in ("ops.json", "ops.safetensors"))
    print(f"{len(meta_cases)} cases, {len(all_tensors)} tensors, {size / 1024:.0f} KiB in {OUT_DIR}")


if __name__ == "__main__":
    main()
