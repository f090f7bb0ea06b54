#!/usr/bin/env python3
"""tests/make_io_fixtures.py — a reference safetensors file written by the official `safetensors`
package, read back by tests/test_safetensors.cc (interop check: one tensor per dtype, a 0-d tensor,
an empty tensor and metadata).

    /opt/attn-venv/bin/python tests/make_io_fixtures.py    # writes tests/fixtures/io_reference.safetensors

The C++ test recomputes the same values from the formulas below, so keep the two in sync.
"""
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    t = {
        "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1,
        "f64": torch.arange(5, dtype=torch.float64) / 3,
        "i32": (torch.arange(6, dtype=torch.int32) * -7 + 3).reshape(2, 3),
        "i64": torch.tensor([2**40, -(2**40), 0, 1], dtype=torch.int64),
        "bool": torch.tensor([True, False, True]),
        "u8": torch.arange(0, 256, 51, dtype=torch.uint8),
        "bf16": torch.tensor([1.0, -2.5, 3.140625, 0.0078125], dtype=torch.bfloat16),
        "f16": torch.tensor([1.0, -2.0, 0.5, 65504.0, 2.0**-24, float("inf"), -0.0], dtype=torch.float16),
        "scalar": torch.tensor(7.0),
        "empty": torch.zeros(0, 3),
        "layer.0.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3).t().contiguous(),
    }
    out = os.path.join(HERE, "fixtures", "io_reference.safetensors")
    save_file(t, out, metadata={"format": "pt", "producer": "make_io_fixtures.py"})
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
