// attn/nn/var_builder.h — fills a module's parameters from a checkpoint by prefixed names (candle's
// VarBuilder), collecting every missing, mis-shaped and unexpected key by name.
//
//   auto src = nn::SafeTensorsWeights::open("model.safetensors");   // or any nn::WeightSource
//   nn::VarBuilder vb(src);
//   nn::VarBuilder layer = vb.pp("encoder").pp("layer").pp(3);       // "encoder.layer.3."
//   layer.load("attention.self.query.weight", attn->query->weight);  // copied in place, shape checked
//   layer.load("attn.c_attn.weight", mha->in_proj_weight, nn::VarBuilder::Transposed);  // HF Conv1D (in, out)
//   Tensor w = layer.get("intermediate.dense.weight", {37, 16});     // throws at once if absent / mis-shaped
//   vb.finish({.ignore = {".attn.bias"}});   // throws one message listing every missing, mis-shaped,
//                                            // and (with strict) unexpected key
//
// Builders made by pp() share one record, so finish() on any of them sees every load. load() records
// problems instead of throwing, so a wrong checkpoint is reported whole, not one key per run.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/normalization.h"
#include "attn/tensor.h"

namespace attn::io {
class SafeTensorsFile;
}

namespace attn::nn {

// Where the weights come from: a checkpoint's tensors by full key. get() returns a float32 tensor.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::vector<std::string> keys() const = 0;
  virtual bool contains(const std::string& key) const = 0;
  virtual Shape shape(const std::string& key) const = 0;
  virtual Tensor get(const std::string& key) const = 0;  // float32 (other float dtypes converted)
  virtual std::string name() const = 0;                  // the file, for messages
};

// One model.safetensors file (memory-mapped).
class SafeTensorsWeights : public WeightSource {
 public:
  static std::shared_ptr<SafeTensorsWeights> open(const std::string& path);
  std::vector<std::string> keys() const override;
  bool contains(const std::string& key) const override;
  Shape shape(const std::string& key) const override;
  Tensor get(const std::string& key) const override;
  std::string name() const override;

 private:
  explicit SafeTensorsWeights(std::shared_ptr<io::SafeTensorsFile> file) : file_(std::move(file)) {}
  std::shared_ptr<io::SafeTensorsFile> file_;
};

struct VarBuilderFinishOptions {
  bool strict = true;                 // unexpected keys are errors (else only listed in the result)
  std::vector<std::string> ignore;    // keys containing any of these substrings are never unexpected
};

// What a load found wrong; every entry is a full checkpoint key (mis-shaped ones with both shapes).
struct VarBuilderReport {
  std::vector<std::string> missing, misshaped, unexpected;
  bool ok() const { return missing.empty() && misshaped.empty() && unexpected.empty(); }
  std::string message() const;  // one line per kind, keys listed
};

class VarBuilder {
 public:
  enum Layout { AsStored, Transposed };  // Transposed: the stored 2-d tensor is (in, out) — HF's Conv1D
  // A parameter filled from the checkpoint: its full key there and how it is laid out there.
  struct Loaded {
    std::string key;
    Tensor param;
    Layout layout;
  };

  explicit VarBuilder(std::shared_ptr<const WeightSource> source);
  VarBuilder pp(const std::string& name) const;  // "a" -> "a.name"
  VarBuilder pp(int64_t index) const { return pp(std::to_string(index)); }
  const std::string& prefix() const { return prefix_; }
  std::string key(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  bool contains(const std::string& name) const;
  const WeightSource& source() const { return *state_->source; }

  // Copies the checkpoint tensor into `param` in place (no autograd record; dtype converted); records
  // a missing or mis-shaped key instead of throwing. Returns whether it loaded.
  bool load(const std::string& name, const Tensor& param, Layout layout = AsStored) const;
  // The tensor itself (float32, a private copy); throws naming the key and shapes if absent or mis-shaped.
  Tensor get(const std::string& name, const Shape& expected, Layout layout = AsStored) const;

  // Every parameter loaded so far, in load order, with its checkpoint key (for gradients, freezing by
  // HF name, saving back in HF's layout).
  const std::vector<Loaded>& loaded() const { return state_->loaded; }
  VarBuilderReport report(const VarBuilderFinishOptions& o = {}) const;
  // report(); throws std::runtime_error naming the file and every bad key unless it is ok (unexpected keys
  // only count with strict).
  VarBuilderReport finish(const VarBuilderFinishOptions& o = {}) const;

 private:
  struct State {
    std::shared_ptr<const WeightSource> source;
    std::vector<std::string> used, missing, misshaped;
    std::vector<Loaded> loaded;
  };
  VarBuilder(std::shared_ptr<State> state, std::string prefix) : state_(std::move(state)), prefix_(std::move(prefix)) {}
  std::shared_ptr<State> state_;
  std::string prefix_;
};

// "weight" and "bias" (when the module has one) under vb, into the module's parameters.
void load_linear(const VarBuilder& vb, const Linear& m, VarBuilder::Layout layout = VarBuilder::AsStored);
void load_layer_norm(const VarBuilder& vb, const LayerNorm& m);
void load_embedding(const VarBuilder& vb, const Embedding& m);

}  // namespace attn::nn
