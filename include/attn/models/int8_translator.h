// attn/models/int8_translator.h — int8 decoding for the Translator: every Linear, packed attention
// projection and the tied output projection as int8 weights (per output channel, symmetric) with
// int8 activations quantised per row on the fly (nn/int8_linear.h); embeddings, norms and softmax stay
// float32. The file `attn quantize` writes holds the quantised values themselves, so a model loaded
// from it computes exactly what quantising the float32 model on the fly computes.
//
//   model.eval();
//   models::quantize_translator_int8(model);                         // in place
//   models::save_int8_translator(model, "out/model.int8.safetensors");
//   models::Translator other(options);
//   models::load_int8_translator(other, "out/model.int8.safetensors");   // throws naming file and key
//
// File layout (safetensors): the float32 state_dict with each quantised weight K ("....linear1.weight",
// "....in_proj_weight") replaced by K.int8 (U8, the int8 value + 128, the weight's shape) and K.scale
// (F32, one per output row); the tied output projection as output_projection.int8 / .scale beside the
// float32 embedding.weight (embedding lookups stay float32).
#pragma once
#include <string>

#include "attn/io/safetensors.h"
#include "attn/models/translator.h"

namespace attn::models {

// Quantises the model in place (eval mode; throws in training mode).
void quantize_translator_int8(Translator& model);
bool is_int8(const Translator& model);
void save_int8_translator(const Translator& model, const std::string& path);
// Loads an int8 file into a model built from the same options; every key is checked (dtype, shape,
// finite non-negative scales) and errors name the file and the key. Leaves the model in eval mode.
void load_int8_translator(Translator& model, const std::string& path);
void load_int8_translator(Translator& model, const io::SafeTensorsFile& file);

}  // namespace attn::models
