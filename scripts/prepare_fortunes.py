#!/usr/bin/env python3
"""Builds the fortune-topic text classification corpus from Debian's fortunes packages.

    python3 scripts/prepare_fortunes.py --out data/fortunes         # or: make data-fortunes

Source: the Debian packages `fortunes` and `fortunes-min` (BSD fortune(6) data files; licence BSD, see
/usr/share/doc/fortunes/copyright). The script does not install them: it downloads the .debs
(`apt-get download`) and unpacks them (`dpkg-deb -x`) in a temporary directory; --deb-dir takes an
already unpacked tree instead. Each file in usr/share/games/fortunes/ is a topic; its entries are
separated by lines holding only "%".

Task: predict the topic (file) of an entry. Entries are cleaned (backspace overstrike "X\\bY" -> "Y",
control characters dropped, Latin-1 files decoded as such), deduplicated (an entry found in two topics
is dropped from both: its label is ambiguous), tokenized (lower case, words and single punctuation
marks separated by spaces, so a word-level vocabulary is meaningful) and split per topic, after a
shuffle with a fixed seed, into 80 % train, 10 % valid, 10 % test (stratified, deterministic).

Output: {train,valid,test}.tsv ("<topic>\\t<tokens>" per line), labels.txt (one topic per line, the
class ids in order) and stats.json (source, licence, class balance per split).
"""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import tempfile

PACKAGES = ["fortunes", "fortunes-min"]
FORTUNE_DIR = "usr/share/games/fortunes"
# Topics with 500-1250 entries each whose names say what they hold (grab bags such as "cookie",
# "fortunes" and "miscellaneous" are left out).
TOPICS = ["computers", "definitions", "people", "politics", "science", "songs-poems", "work", "zippy",
          "men-women", "platitudes"]
SPLITS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
SEED = 17


def clean(entry):
    """The entry's text without overstrike codes and control characters; None if nothing is left."""
    while True:
        stripped = re.sub(r"[^\x08]\x08", "", entry)  # "_\bX" (underline) and "X\bX" (bold) -> "X"
        if stripped == entry:
            break
        entry = stripped
    entry = "".join(c for c in entry if c in "\n\t" or ord(c) >= 32)
    return entry.strip() or None


def tokenize(text):
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


def decode(raw, name):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # a few old fortune files are Latin-1


def read_entries(path):
    """The cleaned entries of one fortune file."""
    with open(path, "rb") as f:
        text = decode(f.read(), path)
    entries = re.split(r"^%\s*$", text, flags=re.M)
    return [e for e in (clean(x) for x in entries) if e]


def collect(fortune_dir, topics):
    """topic -> sorted list of distinct token strings, entries shared between topics removed."""
    by_topic, owners = {}, {}
    for topic in topics:
        path = os.path.join(fortune_dir, topic)
        if not os.path.isfile(path):
            sys.exit(f"prepare_fortunes: no topic file {path}")
        tokens = {tokenize(e) for e in read_entries(path)}
        tokens.discard("")
        by_topic[topic] = tokens
        for t in tokens:
            owners.setdefault(t, set()).add(topic)
    shared = {t for t, o in owners.items() if len(o) > 1}
    return {topic: sorted(tokens - shared) for topic, tokens in by_topic.items()}, len(shared)


def split(by_topic, seed=SEED):
    """split -> list of (topic, tokens), stratified by topic, deterministic."""
    out = {name: [] for name, _ in SPLITS}
    for topic in sorted(by_topic):
        entries = list(by_topic[topic])
        random.Random(f"{seed}:{topic}").shuffle(entries)
        n_valid = max(1, round(len(entries) * SPLITS[1][1]))
        n_test = max(1, round(len(entries) * SPLITS[2][1]))
        parts = {"valid": entries[:n_valid], "test": entries[n_valid:n_valid + n_test],
                 "train": entries[n_valid + n_test:]}
        for name, rows in parts.items():
            out[name].extend((topic, t) for t in rows)
    for name in out:
        random.Random(f"{seed}:{name}").shuffle(out[name])
    return out


def fetch_packages(work):
    for pkg in PACKAGES:
        try:
            subprocess.run(["apt-get", "download", pkg], cwd=work, check=True, capture_output=True)
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            err = getattr(e, "stderr", b"") or b""
            sys.exit(f"prepare_fortunes: apt-get download {pkg} failed (run `apt-get update` once?): "
                     f"{err.decode(errors='replace')[:300]}")
    debs = sorted(glob.glob(os.path.join(work, "*.deb")))
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(work, "pkg")], check=True)
    return os.path.join(work, "pkg"), [os.path.basename(d) for d in debs]


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_corpus(out, splits, topics, n_shared, source):
    os.makedirs(out, exist_ok=True)
    for name, rows in splits.items():
        write_atomic(os.path.join(out, f"{name}.tsv"), "".join(f"{topic}\t{t}\n" for topic, t in rows))
    write_atomic(os.path.join(out, "labels.txt"), "".join(t + "\n" for t in topics))
    stats = {"source": source, "licence": "BSD (fortune-mod; see /usr/share/doc/fortunes/copyright)",
             "task": "topic (fortune file) of an entry", "topics": topics,
             "dropped_shared_between_topics": n_shared, "seed": SEED, "splits": {}}
    for name, rows in splits.items():
        counts = {t: 0 for t in topics}
        for topic, _ in rows:
            counts[topic] += 1
        stats["splits"][name] = {"entries": len(rows), "per_topic": counts,
                                 "majority_fraction": round(max(counts.values()) / max(1, len(rows)), 4),
                                 "tokens": sum(len(t.split()) for _, t in rows)}
    write_atomic(os.path.join(out, "stats.json"), json.dumps(stats, indent=2) + "\n")
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/fortunes")
    ap.add_argument("--deb-dir", help="an already unpacked tree (dpkg-deb -x) holding " + FORTUNE_DIR)
    ap.add_argument("--topics", default=",".join(TOPICS), help="comma-separated topic files")
    args = ap.parse_args()
    topics = [t for t in args.topics.split(",") if t]
    with tempfile.TemporaryDirectory() as work:
        root, debs = (args.deb_dir, ["given"]) if args.deb_dir else fetch_packages(work)
        by_topic, n_shared = collect(os.path.join(root, FORTUNE_DIR), topics)
    source = "Debian packages " + ", ".join(PACKAGES) + " (" + ", ".join(debs) + ")"
    stats = write_corpus(args.out, split(by_topic), topics, n_shared, source)
    print(json.dumps({k: stats[k] for k in ("source", "topics")} |
                     {s: v["entries"] for s, v in stats["splits"].items()}))


if __name__ == "__main__":
    main()
