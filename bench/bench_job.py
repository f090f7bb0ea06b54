"""What a torch_bench.py workload returns (Job), shared by torch_bench.py and hf_bench.py.

    job = Job(fn, "tokens/s", units=64.0, warmup=1, repeats=5, extra={"parameters": count_parameters(model)})
"""


class NotCompiled(Exception):
    """The peer asked for (pytorch-compile, onnxruntime) does not run this workload; the message says why."""


class Job:
    """One workload, built: fn() runs one iteration; throughput = units / seconds per iteration."""

    def __init__(self, fn, unit, units=1.0, warmup=3, repeats=7, extra=None, check=None):
        self.fn, self.unit, self.units, self.warmup, self.repeats = fn, unit, units, warmup, repeats
        self.extra = extra or {}
        self.check = check  # after timing: raises if the last iteration's results are off


def count_parameters(model):
    """Distinct parameters (a tied weight counted once), as attn's Module::num_parameters."""
    return sum(p.numel() for p in model.parameters())
