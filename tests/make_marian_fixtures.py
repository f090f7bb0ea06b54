#!/usr/bin/env python3
"""A small randomly initialised Hugging Face MarianMTModel directory for attn's import test:
tests/fixtures/marian_tiny/ (written by save_pretrained) and tests/fixtures/marian_tiny_expected.json.

    ~/.cache/attn/venv/bin/python tests/make_marian_fixtures.py     (needs torch, transformers, sentencepiece)

The directory is what a user has from the Hub, in miniature: separate source.spm / target.spm (SentencePiece
unigram models trained here on a few English and Spanish lines, identity normalisation to stay small), one
joint vocab.json in Marian's layout (</s> = 0, <unk> = 1, pieces of both models, <pad> last), a MarianMTModel
(d_model 16, 2 heads, 2 encoder + 1 decoder layers, feed-forward 32, swish, scale_embedding) with random
weights (std 0.5, embeddings 0.25, pad's row zero) and a random final_logits_bias, generation_config.json with bad_words_ids = [[pad]] as the opus-mt
models have. Expected values (test_marian.cc): the tokenizer's input ids, greedy output ids (no forced EOS,
max_new_tokens 12), teacher-forced logits of [start] + output, and the decoded strings.
"""
import json
import os
import tempfile

import sentencepiece as spm
import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "marian_tiny")
EN = ["In the beginning God created the heavens and the earth.", "The earth was without form and void.",
      "And God said, Let there be light: and there was light.", "God saw the light, that it was good.",
      "And the evening and the morning were the first day.", "Blessed are the poor in spirit.",
      "The word was with God, and the word was God.", "Love your neighbour as yourself."]
ES = ["En el principio creó Dios los cielos y la tierra.", "Y la tierra estaba desordenada y vacía.",
      "Y dijo Dios: Sea la luz; y fue la luz.", "Y vio Dios que la luz era buena.",
      "Y fue la tarde y la mañana un día.", "Bienaventurados los pobres en espíritu.",
      "El Verbo era con Dios, y el Verbo era Dios.", "Amarás a tu prójimo como a ti mismo."]
SOURCES = ["In the beginning was the word.", "God saw the earth, that it was good.", "Let there be light!", "xyz ☃"]


def train_spm(lines, prefix):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines * 4) + "\n")
    spm.SentencePieceTrainer.train(input=f.name, model_prefix=prefix, vocab_size=48, model_type="unigram",
                                   normalization_rule_name="identity", character_coverage=1.0, pad_id=-1,
                                   bos_id=-1, eos_id=2, unk_id=1, hard_vocab_limit=False, minloglevel=2)
    os.unlink(f.name)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        train_spm(EN, os.path.join(tmp, "src"))
        train_spm(ES, os.path.join(tmp, "tgt"))
        pieces = ["</s>", "<unk>"]
        for name in ("src", "tgt"):
            sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, name + ".model"))
            pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.id_to_piece(i) not in pieces]
        pieces.append("<pad>")
        vocab = {p: i for i, p in enumerate(pieces)}
        V, pad = len(pieces), len(pieces) - 1
        with open(os.path.join(tmp, "vocab.json"), "w") as f:
            json.dump(vocab, f, ensure_ascii=False)
        tok = MarianTokenizer(os.path.join(tmp, "src.model"), os.path.join(tmp, "tgt.model"),
                              os.path.join(tmp, "vocab.json"), source_lang="en", target_lang="es")
        tok.save_pretrained(OUT)
    config = MarianConfig(vocab_size=V, decoder_vocab_size=V, d_model=16, encoder_layers=2, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          activation_function="swish", max_position_embeddings=64, scale_embedding=True,
                          pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0,
                          dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():  # larger weights than init_std 0.02, so that the outputs vary (and some end in EOS)
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
        model.model.shared.weight.normal_(0.0, 0.25)
        model.model.shared.weight[pad].zero_()  # Marian's decoder starts from a zero embedding
        model.final_logits_bias.normal_(0.0, 0.2)
        model.final_logits_bias[0, 0] += 1.5
    model.generation_config = GenerationConfig(decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=0,
                                               forced_eos_token_id=0, bad_words_ids=[[pad]], max_length=64,
                                               num_beams=4)
    model.save_pretrained(OUT)
    # expectations from the directory as saved (the in-memory copy may hold untied lm_head/embedding tensors)
    model = MarianMTModel.from_pretrained(OUT).eval()
    tok = MarianTokenizer.from_pretrained(OUT)

    cases = []
    for src in SOURCES:
        ids = tok([src], return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, num_beams=1, do_sample=False, max_new_tokens=12, forced_eos_token_id=None)
            tgt = out[0].tolist()  # starts with decoder_start_token_id
            logits = model(input_ids=ids, decoder_input_ids=out).logits[0]
        gen = [t for t in tgt[1:]]
        if gen and gen[-1] == 0:
            gen = gen[:-1]
        cases.append({"source": src, "input_ids": ids[0].tolist(), "output_ids": gen, "decoder_input_ids": tgt,
                      "decoded": tok.decode(tgt, skip_special_tokens=True),
                      "logits": [[round(float(v), 6) for v in row] for row in logits]})
    with open(os.path.join(HERE, "fixtures", "marian_tiny_expected.json"), "w") as f:
        json.dump({"vocab_size": V, "pad": pad, "eos": 0, "max_new_tokens": 12, "cases": cases}, f,
                  ensure_ascii=False, indent=0)
    print("wrote", OUT, "vocab", V, "outputs", [c["output_ids"] for c in cases])


if __name__ == "__main__":
    main()
