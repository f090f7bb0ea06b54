"""The *_busy_core workloads of bench/run.py: a workload measured while another process keeps one core busy.

    with busy_core.load(True):          # a spinning process runs (on whichever core the kernel gives it)
        ...                             # paired repeats of attn and PyTorch, both under the same load
    row = busy_core.attn_idle_row(...)  # attn under load / attn idle, toggling the load between repeats

Each `<workload>_busy_core` (for the workloads in WORKLOADS) gets two lines: peer `pytorch` (both sides
under load, paired as usual) and peer `attn-idle` (one attn process; each pair is one repeat with the
spinning process running and one without, in alternating order, each after one untimed repeat under the
same condition, since attn's OpenMP team follows the load within about 0.1-0.4 s; ratio = loaded / idle
throughput, so 0.4 means 2.5x slower). The spinner is a plain `python -c 'while True: pass'`, started for
each loaded stretch and always killed (try/finally), so the load never outlives a measurement. docs/threading.md explains
attn's OpenMP policy, which these lines check.
"""
import contextlib
import subprocess
import sys
import time

SUFFIX = "_busy_core"
WORKLOADS = ("transformer_train_step", "greedy_decode")
SPIN = "while True: pass"
SETTLE_S = 0.2  # the spinner is running (and has left the interpreter's start-up) before timing starts


def names(available):
    """The busy-core names for the workloads attn_bench lists."""
    return [w + SUFFIX for w in WORKLOADS if w in available]


def base(name):
    """The underlying workload of a busy-core name, else None."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) and name[: -len(SUFFIX)] in WORKLOADS else None


@contextlib.contextmanager
def load(on=True, python=sys.executable):
    """Keeps one core busy with a spinning process for the duration of the block (nothing when not on)."""
    if not on:
        yield None
        return
    spinner = subprocess.Popen([python, "-c", SPIN], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE_S)
        if spinner.poll() is not None:
            raise RuntimeError(f"busy core: the spinning process exited with {spinner.returncode}")
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def attn_idle_row(name, attn_cmd, env, timeout, rounds, pairs, server_cls, median, quartiles):
    """Rounds of one attn process each; per pair one repeat under load and one idle (alternating which
    goes first). Returns run.py's row: "attn" = under load, "pytorch" (the peer column) = idle."""
    loaded, idle, ratios, summaries = [], [], [], []
    for r in range(max(1, rounds)):
        server = server_cls(attn_cmd, env, timeout, "attn")
        try:
            for i in range(max(1, pairs)):
                pair = {}
                for busy in ((False, True) if (i + r) % 2 == 0 else (True, False)):
                    with load(busy):
                        server.repeat()  # untimed: attn's team has settled to this load (docs/threading.md)
                        pair[busy] = server.repeat()["s"]
                loaded.append(pair[True])
                idle.append(pair[False])
                ratios.append(pair[False] / pair[True])  # throughput under load / idle throughput
            summaries.append(server.finish())
        finally:
            server.close()
    s = summaries[-1]
    units = s["units_per_iteration"]
    rss = max(x["peak_rss_mib"] for x in summaries)
    ar = dict(s, value=units / median(loaded), repeats=len(loaded), peak_rss_mib=rss, pair_ratios=sorted(ratios))
    pr = dict(s, value=units / median(idle), repeats=len(idle), peak_rss_mib=rss)
    q = sorted(ratios)
    q1, q3 = quartiles(q)
    ratio = median(q)
    note = (f"attn beside a spinning process / attn idle, same process; {len(q)} pairs: ratio median "
            f"{ratio:.2f}, quartiles {q1:.2f}-{q3:.2f}, range {q[0]:.2f}-{q[-1]:.2f}")
    return {"workload": name, "peer": "attn-idle", "attn": ar, "pytorch": pr, "ratio": ratio, "note": note}
