#!/usr/bin/env python3
"""A PyTorch initial state_dict of a tiny character LM: tests/fixtures/lm_init_tiny.safetensors (read by
tests/test_lm_init_weights.cc), written the way `bench/torch_char_lm.py --save-init` writes one.

    ~/.cache/attn/venv/bin/python tests/make_lm_init_fixture.py    (needs torch, safetensors)

The model is bench/torch_char_lm.py's CharLM (Embedding(12 -> 8), 2-layer LSTM with hidden 16,
Linear(16 -> 12)), so the test checks that attn's CharLM takes PyTorch's keys, shapes and dtypes unchanged.
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from torch_char_lm import CharLM  # noqa: E402

torch.manual_seed(0)
model = CharLM(vocab_size=12, embedding=8, hidden=16, layers=2, cell="lstm", dropout=0.0)
save_file({k: v.contiguous() for k, v in model.state_dict().items()},
          os.path.join(HERE, "fixtures", "lm_init_tiny.safetensors"))
