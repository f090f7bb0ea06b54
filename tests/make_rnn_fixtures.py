#!/usr/bin/env python3
"""PyTorch fixtures for the recurrent modules: tests/fixtures/rnn.safetensors (read by tests/test_rnn.cc).

    ~/.cache/attn/venv/bin/python tests/make_rnn_fixtures.py    (needs torch, safetensors)

For each case: the module's state_dict ("<case>/param/<name>"), inputs ("<case>/in/<name>": x, h0, c0),
outputs ("<case>/out/<name>": output, h_n, c_n), a random upstream gradient per output
("<case>/grad_out/<name>"), the gradients of the float inputs ("<case>/grad_in/<name>") and of every
parameter ("<case>/grad_param/<name>"). Packed cases store the padded input and the padded output
(pad_packed_sequence); their padded input positions hold random values and the upstream gradient is
random there too, so any leak of padding into outputs, states or gradients shows. The case list with
options is in the file's metadata under "cases" (JSON).
"""
import json
import os

import torch
from safetensors.torch import save_file
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
tensors, cases = {}, []
I, H, T, B = 3, 4, 5, 3
KINDS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
         "rnn_cell": torch.nn.RNNCell, "lstm_cell": torch.nn.LSTMCell, "gru_cell": torch.nn.GRUCell}


def store(name, module, inputs, outputs):
    for k, v in inputs.items():
        tensors[f"{name}/in/{k}"] = v.detach().clone().contiguous()
    grads = {}
    for k, v in outputs.items():
        g = torch.randn(v.shape)
        grads[k] = g
        tensors[f"{name}/out/{k}"] = v.detach().contiguous()
        tensors[f"{name}/grad_out/{k}"] = g
    loss = sum((v * grads[k]).sum() for k, v in outputs.items())
    loss.backward()
    for k, v in inputs.items():
        if v.grad is not None:
            tensors[f"{name}/grad_in/{k}"] = v.grad.detach().contiguous()
    for k, p in module.named_parameters():
        tensors[f"{name}/grad_param/{k}"] = p.grad.detach().contiguous()


def case(name, kind, opts, *, h0=False, c0=False, lengths=None, enforce_sorted=True, unbatched=False,
         train=True, steps=T):
    module = KINDS[kind](**opts)
    module.train(train)
    for k, v in module.state_dict().items():
        tensors[f"{name}/param/{k}"] = v.detach().clone().contiguous()
    cell = kind.endswith("_cell")
    batch_first = opts.get("batch_first", False)
    D = 2 if opts.get("bidirectional", False) else 1
    L = opts.get("num_layers", 1)
    hid = opts["hidden_size"]
    hout = opts.get("proj_size", 0) or hid
    if cell:
        x = torch.randn(opts["input_size"]) if unbatched else torch.randn(B, opts["input_size"])
        state_shape = (hid,) if unbatched else (B, hid)
        hshape = cshape = state_shape
    else:
        shape = (steps, opts["input_size"]) if unbatched else \
            (B, steps, opts["input_size"]) if batch_first else (steps, B, opts["input_size"])
        x = torch.randn(shape)
        lead = (L * D,) if unbatched else (L * D, B)
        hshape, cshape = lead + (hout,), lead + (hid,)
    inputs = {"x": x.requires_grad_(True)}
    if h0:
        inputs["h0"] = (torch.randn(hshape) * 0.5).requires_grad_(True)
    if c0:
        inputs["c0"] = (torch.randn(cshape) * 0.5).requires_grad_(True)
    state = None
    if kind.startswith("lstm") and h0:
        state = (inputs["h0"], inputs["c0"])
    elif h0:
        state = inputs["h0"]
    outputs = {}
    if cell:
        r = module(x, state)
        if kind == "lstm_cell":
            outputs = {"h_n": r[0], "c_n": r[1]}
        else:
            outputs = {"h_n": r}
    else:
        seq = x
        if lengths is not None:
            seq = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                       enforce_sorted=enforce_sorted)
        out, st = module(seq, state)
        if lengths is not None:
            out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=steps)
        outputs["output"] = out
        if kind == "lstm":
            outputs["h_n"], outputs["c_n"] = st
        else:
            outputs["h_n"] = st
    store(name, module, inputs, outputs)
    cases.append(dict(name=name, kind=kind, options=opts, lengths=lengths, enforce_sorted=enforce_sorted,
                      unbatched=unbatched, train=train))


# ---- RNN
case("rnn_tanh", "rnn", dict(input_size=I, hidden_size=H))
case("rnn_relu_2layer_bidir_h0", "rnn", dict(input_size=I, hidden_size=H, num_layers=2, nonlinearity="relu",
                                              bidirectional=True), h0=True)
case("rnn_batch_first_nobias", "rnn", dict(input_size=I, hidden_size=H, bias=False, batch_first=True), h0=True)
case("rnn_packed_unsorted_bidir", "rnn", dict(input_size=I, hidden_size=H, bidirectional=True), h0=True,
     lengths=[3, 5, 1], enforce_sorted=False)
case("rnn_unbatched", "rnn", dict(input_size=I, hidden_size=H, num_layers=2), h0=True, unbatched=True)
# ---- LSTM
case("lstm_h0", "lstm", dict(input_size=I, hidden_size=H), h0=True, c0=True)
case("lstm_zero_state", "lstm", dict(input_size=I, hidden_size=H, num_layers=2))
case("lstm_2layer_bidir_batch_first", "lstm", dict(input_size=I, hidden_size=H, num_layers=2, bidirectional=True,
                                                   batch_first=True), h0=True, c0=True)
case("lstm_proj_bidir", "lstm", dict(input_size=I, hidden_size=5, proj_size=2, num_layers=2, bidirectional=True),
     h0=True, c0=True)
case("lstm_packed_sorted", "lstm", dict(input_size=I, hidden_size=H, num_layers=2), h0=True, c0=True,
     lengths=[5, 4, 2], enforce_sorted=True)
case("lstm_packed_unsorted_bidir_proj", "lstm", dict(input_size=I, hidden_size=5, proj_size=3, num_layers=2,
                                                     bidirectional=True, batch_first=True),
     h0=True, c0=True, lengths=[2, 5, 3], enforce_sorted=False)
case("lstm_dropout_eval", "lstm", dict(input_size=I, hidden_size=H, num_layers=3, dropout=0.5), train=False)
# ---- GRU
case("gru_basic", "gru", dict(input_size=I, hidden_size=H))
case("gru_2layer_bidir_h0", "gru", dict(input_size=I, hidden_size=H, num_layers=2, bidirectional=True), h0=True)
case("gru_batch_first_nobias", "gru", dict(input_size=I, hidden_size=H, bias=False, batch_first=True), h0=True)
case("gru_packed_unsorted_bidir", "gru", dict(input_size=I, hidden_size=H, num_layers=2, bidirectional=True),
     h0=True, lengths=[4, 1, 5], enforce_sorted=False)
case("gru_unbatched", "gru", dict(input_size=I, hidden_size=H, bidirectional=True), h0=True, unbatched=True)
# ---- cells
case("rnn_cell_tanh", "rnn_cell", dict(input_size=I, hidden_size=H), h0=True)
case("rnn_cell_relu_nobias", "rnn_cell", dict(input_size=I, hidden_size=H, nonlinearity="relu", bias=False),
     h0=True)
case("rnn_cell_zero_state", "rnn_cell", dict(input_size=I, hidden_size=H))
case("lstm_cell_state", "lstm_cell", dict(input_size=I, hidden_size=H), h0=True, c0=True)
case("lstm_cell_zero_state_nobias", "lstm_cell", dict(input_size=I, hidden_size=H, bias=False))
case("lstm_cell_unbatched", "lstm_cell", dict(input_size=I, hidden_size=H), h0=True, c0=True, unbatched=True)
case("gru_cell_state", "gru_cell", dict(input_size=I, hidden_size=H), h0=True)
case("gru_cell_zero_state_nobias", "gru_cell", dict(input_size=I, hidden_size=H, bias=False))
case("gru_cell_unbatched", "gru_cell", dict(input_size=I, hidden_size=H), h0=True, unbatched=True)

path = os.path.join(HERE, "fixtures", "rnn.safetensors")
save_file(tensors, path, metadata={"cases": json.dumps(cases)})
print(f"wrote {len(cases)} cases, {len(tensors)} tensors to {path}")
