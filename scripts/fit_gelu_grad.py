#!/usr/bin/env python3
"""Writes src/backend/cpu/gelu_grad_table.inc: the piecewise polynomial behind the AVX-512 GELU backward.

GELU'(x) = Phi(x) + x phi(x) (exact form). On [-8, 8) it is cut into 32 intervals of width 0.5; on
each, a degree-6 polynomial in t = x - centre (|t| <= 0.25) is fitted by least squares at 28
Chebyshev nodes (near-minimax) against mpmath at 30 digits, and rounded to float32. Outside the
range the kernel clamps x, where GELU' is 0 or 1 to float precision (|GELU'(-8)| = 4e-14).
The script also evaluates the table the way the kernel does (float32 Horner with fused multiply-add)
and prints the largest absolute error over [-9, 9]; the run that wrote the committed table printed
max abs error 1.1e-07 (that is float32 rounding near 1, where an ulp is 1.2e-07).

Needs numpy and mpmath (the PyTorch virtual environment of scripts/setup-venv.sh has both):
    python scripts/fit_gelu_grad.py > src/backend/cpu/gelu_grad_table.inc
"""
import sys

import mpmath as mp
import numpy as np

LO, HI, INTERVALS, DEGREE = -8.0, 8.0, 32, 6
WIDTH = (HI - LO) / INTERVALS
mp.mp.dps = 30


def gelu_grad(x):
    x = mp.mpf(x)
    return float(mp.ncdf(x) + x * mp.npdf(x))


def fit():
    coef = np.zeros((DEGREE + 1, INTERVALS))
    nodes = 4 * (DEGREE + 1)
    t = WIDTH / 2 * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)
    vander = np.stack([t ** j for j in range(DEGREE + 1)], 1)
    for i in range(INTERVALS):
        centre = LO + WIDTH * (i + 0.5)
        y = np.array([gelu_grad(centre + tt) for tt in t])
        coef[:, i], *_ = np.linalg.lstsq(vander, y, rcond=None)
    return coef.astype(np.float32)


def fma32(a, b, c):  # float32 a * b + c with one rounding (the product is exact in float64)
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def kernel(coef, x):  # what vgelu_erf_grad computes before multiplying by the incoming gradient
    f32 = np.float32
    xc = np.clip(x, f32(LO), f32(HI))
    u = np.minimum(fma32(xc, np.full_like(xc, f32(1 / WIDTH)), np.full_like(xc, f32(-LO / WIDTH - 0.5))), f32(31.49998))
    fi = np.round(u)  # nearest, ties to even, as vround
    idx = fi.astype(np.int64)
    t = (xc - fma32(fi, np.full_like(xc, f32(WIDTH)), np.full_like(xc, f32(LO + WIDTH / 2)))).astype(np.float32)
    r = coef[DEGREE][idx]
    for j in range(DEGREE - 1, -1, -1):
        r = fma32(r, t, coef[j][idx])
    return r


def main():
    coef = fit()
    x = np.concatenate([np.linspace(-9, 9, 36001), np.random.default_rng(0).normal(size=4000) * 2]).astype(np.float32)
    err = np.abs(kernel(coef, x).astype(np.float64) - np.array([gelu_grad(float(v)) for v in x]))
    print(f"max abs error {err.max():.3g} at x = {x[err.argmax()]:.6g}", file=sys.stderr)
    print("// src/backend/cpu/gelu_grad_table.inc — written by scripts/fit_gelu_grad.py; do not edit.")
    print(f"// GELU'(x) = Phi(x) + x phi(x) on [{LO:g}, {HI:g}): {INTERVALS} intervals of width {WIDTH:g}, on interval i")
    print(f"// sum_j kGeluGradCoef[j][i] t^j with t = x - ({LO + WIDTH / 2:g} + {WIDTH:g} i). Max abs error {err.max():.2g}.")
    print(f"alignas(64) static const float kGeluGradCoef[{DEGREE + 1}][{INTERVALS}] = {{")
    for j in range(DEGREE + 1):
        vals = ", ".join(f"{float(v):.8e}f" for v in coef[j])
        print(f"    {{{vals}}},")
    print("};")


if __name__ == "__main__":
    main()
