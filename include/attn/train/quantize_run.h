// attn/train/quantize_run.h — `attn quantize`: a train-translator run directory -> a directory with the
// int8 model (models/int8_translator.h) that TranslationSession::load and `attn translate --model` read.
//
//   train::quantize_run_dir("runs/translate", "runs/translate-int8");
//   auto s = train::TranslationSession::load("runs/translate-int8");   // int8 decoding
#pragma once
#include <string>

namespace attn::train {

inline constexpr const char* kInt8WeightsFile = "model.int8.safetensors";

// Writes out_dir/config.json (the run's, plus "quantized": "int8" and "weights": kInt8WeightsFile),
// the run's SentencePiece model and the int8 weights of its checkpoint (best.safetensors by default,
// as TranslationSession::load picks it). Returns the weights file's path.
std::string quantize_run_dir(const std::string& run_dir, const std::string& out_dir, const std::string& checkpoint = "");

}  // namespace attn::train
