#!/usr/bin/env python3
"""Builds the English->Spanish verse-aligned Bible corpus from Debian's SWORD modules.

    python3 scripts/prepare_bible.py --out data/bible

Sources (Debian packages, all public domain): sword-text-web (engWEB2015eb), sword-text-sparv
(spaRV1909eb), sword-text-kjv (engKJV2006eb, used only as an alignment check), dumped with
`mod2imp` from libsword-utils. The English side is derived from the World English Bible text;
since we modify it (markup stripped, verses dropped), we do not call the result by that name.

Alignment: RV1909 and KJV share versification; the English source does not everywhere. A pair is
kept only if the English verse agrees with the KJV verse of the same key (word overlap) and the
Spanish/KJV length ratio is plausible. Held-out books (whole books, since parallel passages repeat)
form dev and test. Output: {train,dev,test}.{en,es} (one verse per line) and stats.json.
"""
import argparse
import html
import json
import os
import re
import subprocess
import sys

MODULES = {"en": "engWEB2015eb", "es": "spaRV1909eb", "kjv": "engKJV2006eb"}
DEV_BOOKS = {"Mark", "Galatians"}
TEST_BOOKS = {"John", "Ephesians"}

NOTE_RE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
TITLE_RE = re.compile(r"<title\b[^>]*>.*?</title>", re.S)
SPEAKER_RE = re.compile(r"<speaker\b[^>]*>.*?</speaker>", re.S)
TAG_RE = re.compile(r"<[^>]+>")
WRITTEN_RE = re.compile(r"\s*Fu[ée] escrita\b.*$", re.S)  # RV1909 subscriptions after epistles
STRONGS_RE = re.compile(r"\b[GH]\d{3,5}\b")
WORD_RE = re.compile(r"[a-záéíóúñü]+", re.I)


def dump(module):
    try:
        out = subprocess.run(["mod2imp", module], check=True, capture_output=True).stdout
    except FileNotFoundError:
        sys.exit("prepare_bible: mod2imp not found; install libsword-utils (make deps does)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"prepare_bible: mod2imp {module} failed: {e.stderr.decode(errors='replace')[:300]}")
    verses, key, buf = {}, None, []
    for line in out.decode("utf-8", errors="replace").splitlines():
        if line.startswith("$$$"):
            if key:
                verses[key] = "\n".join(buf)
            key, buf = line[3:].strip(), []
        else:
            buf.append(line)
    if key:
        verses[key] = "\n".join(buf)
    return verses


def clean(raw, lang):
    t = NOTE_RE.sub(" ", raw)
    t = TITLE_RE.sub(" ", t)
    t = SPEAKER_RE.sub(" ", t)
    t = TAG_RE.sub(" ", t)
    t = html.unescape(t)
    t = t.replace("¶", " ")
    t = STRONGS_RE.sub(" ", t)
    if lang == "es":
        t = WRITTEN_RE.sub("", t)
    t = re.sub(r"\s+([,.;:!?»”’)])", r"\1", t)
    t = re.sub(r"([«“‘(])\s+", r"\1", t)
    t = re.sub(r"\s+", " ", t).strip()
    if lang == "es" and t:
        # RV1909 capitalises the first word of each chapter ("EN el principio"): lower all but its first letter
        m = re.match(r"^([A-ZÁÉÍÓÚÑ]{2,})(\b.*)$", t)
        if m:
            w = m.group(1)
            t = w[0] + w[1:].lower() + m.group(2)
    return t


def parse_key(key):
    m = re.match(r"^(.+) (\d+):(\d+)$", key)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def words(t):
    return [w.lower() for w in WORD_RE.findall(t)]


STOP_EN = set("the and of to that in he i for his a they is him it was not with be all you shall them unto my".split())
STOP_ES = set("de y la el que á en los a las no se por su con le lo del al sus mi para es".split())


def learn_dice(en_sents, es_sents):
    from collections import Counter
    ce, cs, co = Counter(), Counter(), Counter()
    for e, s in zip(en_sents, es_sents):
        e, s = set(e) - STOP_EN, set(s) - STOP_ES
        ce.update(e)
        cs.update(s)
        co.update((a, b) for a in e for b in s)
    return {k: 2.0 * v / (ce[k[0]] + cs[k[1]]) for k, v in co.items() if v >= 3}


def pair_score(dice, e, s):
    e, s = set(e) - STOP_EN, set(s) - STOP_ES
    if not e or not s:
        return 0.0
    return sum(max((dice.get((a, b), 0.0) for b in s), default=0.0) for a in e) / len(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/bible")
    ap.add_argument("--min-overlap", type=float, default=0.25, help="min English/KJV word-set overlap")
    ap.add_argument("--min-ratio", type=float, default=0.45, help="min Spanish/KJV length ratio (words)")
    ap.add_argument("--max-ratio", type=float, default=2.2, help="max Spanish/KJV length ratio (words)")
    ap.add_argument("--min-score", type=float, default=0.08, help="min cross-lingual Dice score of a pair")
    ap.add_argument("--shift-margin", type=float, default=0.05, help="drop a pair a neighbour matches better by this")
    args = ap.parse_args()

    texts = {lang: dump(mod) for lang, mod in MODULES.items()}
    keys = [k for k in texts["es"] if parse_key(k) and parse_key(k)[2] > 0]
    stats = {"common_keys": 0, "empty": 0, "misaligned_en": 0, "bad_ratio": 0, "shifted_es": 0, "kept": 0}
    candidates = []  # (key, en, es, index in keys) passing the monolingual checks, in canonical order
    for index, key in enumerate(keys):
        if key not in texts["en"] or key not in texts["kjv"]:
            continue
        stats["common_keys"] += 1
        en, es, kjv = clean(texts["en"][key], "en"), clean(texts["es"][key], "es"), clean(texts["kjv"][key], "kjv")
        if not en or not es or not kjv:
            stats["empty"] += 1
            continue
        we, wk, ws = words(en), words(kjv), words(es)
        se, sk = set(we), set(wk)
        overlap = len(se & sk) / max(1, min(len(se), len(sk)))
        if overlap < args.min_overlap or not (0.5 <= len(we) / max(1, len(wk)) <= 2.0):
            stats["misaligned_en"] += 1
            continue
        ratio = len(ws) / max(1, len(wk))
        if not (args.min_ratio <= ratio <= args.max_ratio):
            stats["bad_ratio"] += 1
            continue
        candidates.append((key, en, es, index))

    # Cross-lingual check: a Dice dictionary learned from all candidate pairs scores each pair; a pair
    # whose Spanish side matches a neighbouring English verse better than its own is shifted (RV1909
    # numbers some passages differently) and is dropped, as are pairs with a very low score.
    dice = learn_dice([words(c[1]) for c in candidates], [words(c[2]) for c in candidates])
    scores = [pair_score(dice, words(c[1]), words(c[2])) for c in candidates]
    splits = {"train": [], "dev": [], "test": []}
    for i, (key, en, es, index) in enumerate(candidates):
        ws = words(es)
        own = scores[i]
        neighbour_en = [clean(texts["en"].get(keys[j], ""), "en") for j in (index - 1, index + 1) if 0 <= j < len(keys)]
        neighbours = [pair_score(dice, words(n), ws) for n in neighbour_en]
        if own < args.min_score or any(n > own + args.shift_margin for n in neighbours):
            stats["shifted_es"] += 1
            continue
        book = parse_key(key)[0]
        split = "dev" if book in DEV_BOOKS else "test" if book in TEST_BOOKS else "train"
        splits[split].append((key, en, es))
        stats["kept"] += 1

    os.makedirs(args.out, exist_ok=True)
    for name, rows in splits.items():
        for lang, col in (("en", 1), ("es", 2)):
            tmp = os.path.join(args.out, f".{name}.{lang}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(r[col] + "\n")
            os.replace(tmp, os.path.join(args.out, f"{name}.{lang}"))
        with open(os.path.join(args.out, f"{name}.keys"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(r[0] + "\n")
        stats[f"{name}_pairs"] = len(rows)
        stats[f"{name}_words_en"] = sum(len(r[1].split()) for r in rows)
        stats[f"{name}_words_es"] = sum(len(r[2].split()) for r in rows)
    stats["dev_books"], stats["test_books"] = sorted(DEV_BOOKS), sorted(TEST_BOOKS)
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
