#!/usr/bin/env python3
"""Writes tests/fixtures/bleu.json: hypotheses, references and sacreBLEU's BLEU/chrF on them.

    /opt/attn-venv/bin/python tests/make_bleu_fixtures.py     (needs: pip install sacrebleu)
"""
import json
import os
import random

import sacrebleu

random.seed(7)
BASE_REFS = [
    "En el principio crió Dios los cielos y la tierra.",
    "Y dijo Dios: Sea la luz: y fué la luz.",
    "El precio es 3,50 euros -- o 4.25 dólares, ¿no?",
    "Vinieron 1-2 hombres (tres, quizá) a las 10:30.",
    "«Jehová es mi pastor; nada me faltará.»",
    "He said: \"it's 5-6 o'clock\" & left...",
    "A&amp;B &lt;tag&gt; &quot;quoted&quot; <skipped> end",
    "Ésta es una línea con\u00a0espacio duro y\ttabulador.",
    "",
    "single",
    "E.g., U.S.A. and 1,000,000 people; done.",
    "Mas Jehová había prevenido un gran pez que tragase á Jonás.",
]


def corrupt(s):
    w = s.split()
    ops = random.randint(0, 3)
    for _ in range(ops):
        if not w:
            break
        k = random.randrange(len(w))
        r = random.random()
        if r < 0.3:
            del w[k]
        elif r < 0.6:
            w.insert(k, random.choice(["y", "la", "de", "Dios", ",", "."]))
        else:
            w[k] = w[k][::-1]
    return " ".join(w)


cases = []
refs = BASE_REFS
for name, hyps in [
    ("identical", list(refs)),
    ("corrupted", [corrupt(r) for r in refs]),
    ("short", [" ".join(r.split()[:2]) for r in refs]),
    ("empty_hyps", ["" for _ in refs]),
    ("long", [r + " " + r for r in refs]),
]:
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    cases.append({"name": name, "hyps": hyps, "refs": [refs], "bleu": bleu.score, "chrf": chrf.score,
                  "sys_len": bleu.sys_len, "ref_len": bleu.ref_len, "counts": bleu.counts, "totals": bleu.totals})
# two reference streams
refs2 = [corrupt(r) for r in refs]
hyps = [corrupt(r) for r in refs]
cases.append({"name": "two_refs", "hyps": hyps, "refs": [refs, refs2],
              "bleu": sacrebleu.corpus_bleu(hyps, [refs, refs2]).score,
              "chrf": sacrebleu.corpus_chrf(hyps, [refs, refs2]).score})
tok = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
tokens = [{"in": s, "out": tok(s.rstrip())} for s in BASE_REFS + ["a.b,c 1.5 2,3 x-1 1-x", "..,,", "¿Qué?¡Sí!"]]
out = os.path.join(os.path.dirname(__file__), "fixtures", "bleu.json")
with open(out, "w", encoding="utf-8") as f:
    json.dump({"sacrebleu_version": sacrebleu.__version__, "cases": cases, "tokenize_13a": tokens}, f,
              ensure_ascii=False, indent=0)
print("wrote", out)
