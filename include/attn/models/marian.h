// attn/models/marian.h — Hugging Face MarianMTModel directories: export an attn translator run to one
// (transformers' MarianMTModel and CTranslate2's ct2-transformers-converter load it), and run one in attn.
//
//   attn::models::export_hf_marian("runs/translate", "runs/translate-hf");  // config.json, model.safetensors,
//                                                                           // source.spm, target.spm, vocab.json, ...
//   if (attn::models::is_hf_marian_dir("opus-mt-en-es")) {
//     attn::train::TranslationSession s = attn::models::load_hf_marian("opus-mt-en-es");
//     std::vector<std::string> es = s.translate({"In the beginning God created the heavens."}, {.beam_size = 4});
//   }
//
// Both directions are exact re-parameterisations, not approximations:
// - attn's sinusoids are interleaved (sin, cos, sin, cos, ...), Marian's split (every sin, then every cos):
//   the same table up to a permutation of the model dimension. Permuting that axis of every weight (LayerNorm,
//   attention and the feed-forward blocks are equivariant to it) maps one model onto the other.
// - token ids are rotated on export so that pad is the last id, Marian's layout (CTranslate2's converter
//   drops that row: its decoder starts from a zero embedding and never produces pad).
// - the exported run must have Marian's architecture: post-LN without nn.Transformer's final LayerNorms,
//   decoding started from the (zero) pad embedding — `attn train-translator --marian` trains one.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "attn/models/translator.h"
#include "attn/train/translation.h"

namespace attn::models {

struct HfMarianExportOptions {
  std::string checkpoint = {};  // default: the run's best.safetensors, else checkpoint.safetensors
  std::string source_lang = "en", target_lang = "es";  // written to tokenizer_config.json
};

// Writes out_dir (created): config.json, generation_config.json, model.safetensors, source.spm and
// target.spm (the run's joint SentencePiece model), vocab.json, tokenizer_config.json,
// special_tokens_map.json. Throws naming the run's file/option when the model cannot be expressed.
void export_hf_marian(const std::string& run_dir, const std::string& out_dir, const HfMarianExportOptions& o = {});

// A directory whose config.json says "model_type": "marian".
bool is_hf_marian_dir(const std::string& dir);

// Loads a MarianMTModel directory (config.json, model.safetensors, vocab.json, source.spm, target.spm,
// optional tokenizer_config.json / generation_config.json). Ids are vocab.json's; decoding starts from
// decoder_start_token_id. Errors name the file and key (missing file, mismatched vocabulary, shapes).
train::TranslationSession load_hf_marian(const std::string& dir);

// MarianTokenizer's behaviour (transformers): source.spm segments the source into pieces, vocab.json
// maps pieces to ids (unknown pieces -> <unk>), a leading ">>xx<<" language code is one token; decoding
// skips the special tokens (pad, eos, unk) and joins the pieces with target.spm.
class MarianTokenizer : public train::TranslationTokenizer {
 public:
  static std::shared_ptr<MarianTokenizer> load(const std::string& dir);
  int vocab_size() const override { return int(pieces_.size()); }
  std::vector<int> encode_source(const std::string& line) const override;
  std::vector<int> encode_target(const std::string& line) const override;
  std::string decode_target(const std::vector<int>& ids) const override;
  std::string piece(int id) const override;
  int pad_id() const { return pad_; }
  int eos_id() const { return eos_; }
  int unk_id() const { return unk_; }

 private:
  std::vector<int> encode(const text::SentencePiece& sp, const std::string& line) const;
  std::string dir_;
  std::shared_ptr<text::SentencePiece> source_, target_;
  std::vector<std::string> pieces_;              // id -> piece ("" for ids vocab.json leaves out)
  std::unordered_map<std::string, int> ids_;     // piece -> id
  int unk_ = 0, pad_ = 0, eos_ = 0;
};

}  // namespace attn::models
