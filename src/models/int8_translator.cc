// src/models/int8_translator.cc — quantising, saving and loading the Translator's int8 weights
// (see int8_translator.h for the file layout).
#include "attn/models/int8_translator.h"

#include <cmath>
#include <functional>
#include <set>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/nn/int8_linear.h"

namespace attn::models {
namespace {

constexpr const char* kFormatKey = "format";
constexpr const char* kFormat = "attn-int8";
constexpr const char* kOutputKey = "output_projection";  // the tied output projection's int8 copy
constexpr int kZeroPoint = 128;                          // U8 value = int8 value + 128

// One quantised weight: its key in the state_dict (or kOutputKey), shape, and where its int8 form goes.
struct Int8Slot {
  std::string key;
  int64_t out = 0, in = 0;
  std::shared_ptr<const nn::Int8Matrix> current;
  std::function<void(std::shared_ptr<const nn::Int8Matrix>)> set;
};

std::string dotted(const std::string& prefix, const std::string& name) { return prefix.empty() ? name : prefix + "." + name; }

std::vector<Int8Slot> int8_slots(Translator& model) {
  std::vector<Int8Slot> slots;
  for (const auto& [name, m] : model.named_modules()) {
    if (auto* l = dynamic_cast<nn::Linear*>(m)) {
      slots.push_back({dotted(name, "weight"), l->weight.size(0), l->weight.size(1), l->int8,
                       [l](std::shared_ptr<const nn::Int8Matrix> w) { l->int8 = std::move(w); }});
    } else if (auto* a = dynamic_cast<nn::MultiheadAttention*>(m); a && a->options.packed_projections) {
      slots.push_back({dotted(name, "in_proj_weight"), a->in_proj_weight.size(0), a->in_proj_weight.size(1),
                       a->in_proj_int8, [a](std::shared_ptr<const nn::Int8Matrix> w) { a->in_proj_int8 = std::move(w); }});
    }
  }
  if (model.options.tie_output) {
    Translator* t = &model;
    slots.push_back({kOutputKey, model.options.vocab_size, model.options.d_model, model.output_int8,
                     [t](std::shared_ptr<const nn::Int8Matrix> w) { t->output_int8 = std::move(w); }});
  }
  return slots;
}

[[noreturn]] void fail(const std::string& path, const std::string& key, const std::string& what) {
  throw std::runtime_error(path + ": " + key + ": " + what);
}

// K.int8 and K.scale of one slot, checked: dtypes, shapes, finite non-negative scales.
std::shared_ptr<nn::Int8Matrix> read_slot(const io::SafeTensorsFile& f, const Int8Slot& s) {
  const std::string qk = s.key + ".int8", sk = s.key + ".scale";
  for (const std::string& k : {qk, sk})
    if (!f.contains(k)) fail(f.path(), k, "missing (an int8 model of this config.json has it; was the file cut short?)");
  const auto& q_entry = f.entries().at(qk);
  if (q_entry.dtype_name != "U8" || q_entry.shape != Shape{s.out, s.in})
    fail(f.path(), qk, "is " + q_entry.dtype_name + " " + shape_str(q_entry.shape) + ", expected U8 " + shape_str({s.out, s.in}));
  const auto& s_entry = f.entries().at(sk);
  if (s_entry.dtype_name != "F32" || s_entry.shape != Shape{s.out})
    fail(f.path(), sk, "is " + s_entry.dtype_name + " " + shape_str(s_entry.shape) + ", expected F32 " + shape_str({s.out}));
  const Tensor q = f.get(qk).contiguous(), scale = f.get(sk).contiguous();
  std::vector<int8_t> values(size_t(s.out * s.in));
  const uint8_t* qp = q.data_ptr<uint8_t>();
  for (size_t i = 0; i < values.size(); ++i) {
    if (qp[i] == 0) fail(f.path(), qk, "element " + std::to_string(i) + " is 0, i.e. -128 (symmetric values are -127..127)");
    values[i] = int8_t(int(qp[i]) - kZeroPoint);
  }
  std::vector<float> scales(scale.data_ptr<float>(), scale.data_ptr<float>() + s.out);
  for (size_t i = 0; i < scales.size(); ++i)
    if (!std::isfinite(scales[i]) || scales[i] < 0)
      fail(f.path(), sk, "row " + std::to_string(i) + " has scale " + std::to_string(scales[i]) + " (must be finite and >= 0)");
  return std::make_shared<nn::Int8Matrix>(std::move(values), std::move(scales), s.out, s.in);
}

}  // namespace

void quantize_translator_int8(Translator& model) {
  if (model.is_training()) throw std::logic_error("quantize_translator_int8: call eval() first (int8 is for inference)");
  NoGradGuard ng;
  nn::quantize_linears_int8(model);
  if (model.options.tie_output) model.output_int8 = nn::Int8Matrix::quantize(model.embedding->weight);
}

bool is_int8(const Translator& model) {
  return model.options.tie_output ? model.output_int8 != nullptr : model.generator->int8 != nullptr;
}

void save_int8_translator(const Translator& model, const std::string& path) {
  std::map<std::string, Tensor> state = model.state_dict();
  for (const Int8Slot& s : int8_slots(const_cast<Translator&>(model))) {
    if (!s.current) throw std::logic_error("save_int8_translator: " + s.key + " is not quantised (quantize_translator_int8 first)");
    state.erase(s.key);
    Tensor q = empty({s.out, s.in}, {.dtype = kUInt8});
    uint8_t* qp = q.data_ptr<uint8_t>();
    const std::vector<int8_t>& v = s.current->values();
    for (size_t i = 0; i < v.size(); ++i) qp[i] = uint8_t(int(v[i]) + kZeroPoint);
    state[s.key + ".int8"] = q;
    state[s.key + ".scale"] = from_vector(s.current->scales(), {s.out});
  }
  io::save_safetensors(path, state,
                       {{kFormatKey, kFormat},
                        {"int8_encoding", "K.int8 = round(w / K.scale) + 128 per output row, K.scale = max|w_row| / 127"}});
}

void load_int8_translator(Translator& model, const std::string& path) {
  load_int8_translator(model, io::SafeTensorsFile::open(path));
}

void load_int8_translator(Translator& model, const io::SafeTensorsFile& f) {
  const auto format = f.metadata().find(kFormatKey);
  if (format == f.metadata().end() || format->second != kFormat)
    throw std::runtime_error(f.path() + ": not an int8 model written by `attn quantize` (no __metadata__ \"" +
                             std::string(kFormatKey) + "\": \"" + kFormat + "\")");
  model.eval();
  NoGradGuard ng;
  std::vector<Int8Slot> slots = int8_slots(model);
  std::vector<std::shared_ptr<nn::Int8Matrix>> matrices;
  std::map<std::string, Tensor> state;
  std::set<std::string> consumed;
  for (const Int8Slot& s : slots) {
    matrices.push_back(read_slot(f, s));
    if (s.key != kOutputKey) state[s.key] = matrices.back()->dequantize();  // the float32 parameter it stands for
    consumed.insert({s.key + ".int8", s.key + ".scale"});
  }
  for (const std::string& key : f.keys()) {
    if (consumed.count(key)) continue;
    const std::string& dtype = f.entries().at(key).dtype_name;
    if (dtype != "F32") fail(f.path(), key, "is " + dtype + ", expected F32 (only the .int8 tensors are quantised)");
    state[key] = f.get(key);
  }
  try {
    model.load_state_dict(state);
  } catch (const std::exception& e) {
    throw std::runtime_error(f.path() + " does not fit the model of its config.json: " + e.what());
  }
  for (size_t i = 0; i < slots.size(); ++i) slots[i].set(matrices[i]);
}

}  // namespace attn::models
