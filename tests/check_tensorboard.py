#!/usr/bin/env python3
"""Checks attn's TensorBoard event files with the real `tensorboard` package (not run by `make test`:
CI has no tensorboard; run it by hand or from bench).

    # a log dir written by attn::io::MetricsWriter (e.g. by the C++ test, kept on request):
    ATTN_METRICS_KEEP_DIR=/tmp/attn-metrics ./build/tests/attn_tests --gtest_filter='Metrics*'
    python tests/check_tensorboard.py /tmp/attn-metrics/tb
    # any run dir: every scalar in <logdir>/metrics.jsonl must be in the event file(s), same step and value
    python tests/check_tensorboard.py runs/cnn

    python tests/check_tensorboard.py --golden   # prints the reference bytes used in tests/test_metrics.cc

Needs: pip install tensorboard.  Exit status 0 when every scalar matches.
"""
import argparse
import glob
import json
import math
import os
import struct
import sys


def golden():
    """Serializes reference Events with tensorboard's own protobuf classes and record writer."""
    import io

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    scalars = event_pb2.Event(
        wall_time=1700000000.25,
        step=-3,
        summary=summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag="train/loss", simple_value=0.5),
            summary_pb2.Summary.Value(tag="acc", simple_value=-1.5),
        ]))
    version = event_pb2.Event(wall_time=1.5, file_version="brain.Event:2")
    buf = io.BytesIO()
    RecordWriter(buf).write(version.SerializeToString())
    print("scalars event  :", scalars.SerializeToString().hex())
    print("version event  :", version.SerializeToString().hex())
    print("version record :", buf.getvalue().hex())


def check(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
    if not events:
        sys.exit(f"FAIL: no events.out.tfevents.* in {logdir}")
    jsonl = os.path.join(logdir, "metrics.jsonl")
    if not os.path.exists(jsonl):
        sys.exit(f"FAIL: no metrics.jsonl in {logdir}")
    expected = {}  # tag -> [(step, wall_time, value)]
    with open(jsonl) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            step, wall = row.pop("step"), row.pop("wall_time")
            for tag, value in row.items():
                expected.setdefault(tag, []).append((step, wall, math.nan if value is None else value))

    acc = EventAccumulator(logdir, size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    got_tags = set(acc.Tags()["scalars"])
    if got_tags != set(expected):
        sys.exit(f"FAIL: tags in event file {sorted(got_tags)} != tags in metrics.jsonl {sorted(expected)}")
    n = 0
    for tag, rows in expected.items():
        got = acc.Scalars(tag)
        if len(got) != len(rows):
            sys.exit(f"FAIL: tag {tag}: {len(got)} scalars in event file, {len(rows)} in metrics.jsonl")
        for ev, (step, wall, value) in zip(got, rows):
            as_f32 = struct.unpack("<f", struct.pack("<f", value))[0]  # simple_value is a float32
            same = (math.isnan(as_f32) and math.isnan(ev.value)) or ev.value == as_f32
            if ev.step != step or not same or abs(ev.wall_time - wall) > 1e-6:
                sys.exit(f"FAIL: tag {tag}: event (step={ev.step}, value={ev.value}, wall={ev.wall_time}) != "
                         f"jsonl (step={step}, value={value}, wall={wall})")
            n += 1
    if n == 0:
        sys.exit("FAIL: no scalars")
    print(f"OK: {n} scalars under {len(expected)} tags in {len(events)} event file(s) match metrics.jsonl")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir", nargs="?")
    ap.add_argument("--golden", action="store_true", help="print the reference bytes for tests/test_metrics.cc")
    args = ap.parse_args()
    if args.golden:
        golden()
    elif args.logdir:
        check(args.logdir)
    else:
        ap.error("give a log dir or --golden")


if __name__ == "__main__":
    main()
