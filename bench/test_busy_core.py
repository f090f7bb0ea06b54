#!/usr/bin/env python3
"""ctest busy_core_spinner_lifecycle: bench/busy_core.py's spinning process runs inside `load()` and is gone
after it, also when the block raises; the *_busy_core names map to their workloads. No timing."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import busy_core  # noqa: E402


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def main():
    assert busy_core.names(["gemm_2048", "greedy_decode"]) == ["greedy_decode_busy_core"]
    assert busy_core.base("transformer_train_step_busy_core") == "transformer_train_step"
    assert busy_core.base("greedy_decode") is None and busy_core.base("gemm_2048_busy_core") is None

    with busy_core.load(False) as nothing:
        assert nothing is None
    with busy_core.load(True) as spinner:
        pid = spinner.pid
        assert alive(pid), "the spinning process is not running inside the block"
    assert not alive(pid), "the spinning process outlived the block"

    try:
        with busy_core.load(True) as spinner:
            pid = spinner.pid
            raise KeyboardInterrupt  # what Ctrl-C during a measurement raises
    except KeyboardInterrupt:
        pass
    assert not alive(pid), "the spinning process outlived a block that raised"
    print("busy_core: OK")


if __name__ == "__main__":
    main()
