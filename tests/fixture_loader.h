// tests/fixture_loader.h — reads the PyTorch fixtures made by tests/make_fixtures.py.
//
//   const attn_test::Fixtures& fx = attn_test::Fixtures::get();      // tests/fixtures/ops.{json,safetensors}
//   const attn_test::FixtureCase& c = fx.find("add_bcast");
//   std::vector<attn::Tensor> in = fx.inputs(c);                      // views applied, grads required
//   attn::Tensor want = fx.tensor(c.name + "/out");                   // private (writable) copy
//   EXPECT_TRUE(attn_test::tensors_close(got, want, c.rtol, c.atol, "add_bcast/out"));
//
// A case's inputs are stored contiguous under "<case>/in<i>"; each input's "view" lists Tensor view
// calls (transpose, t, permute, slice, narrow, select, expand, unsqueeze) that turn it into the op
// input. That view is detached and becomes the leaf, so "<case>/grad_in<i>" has the op input's shape.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "attn/io/safetensors.h"
#include "attn/ops.h"
#include "attn/tensor.h"

#ifndef ATTN_FIXTURE_DIR
#define ATTN_FIXTURE_DIR "tests/fixtures"
#endif

namespace attn_test {

using attn::DType;
using attn::Shape;
using attn::Tensor;
using json = nlohmann::json;

inline DType dtype_from_name(const std::string& s) {
  if (s == "float32") return attn::kFloat32;
  if (s == "float64") return attn::kFloat64;
  if (s == "int64") return attn::kInt64;
  if (s == "int32") return attn::kInt32;
  if (s == "bool") return attn::kBool;
  if (s == "uint8") return attn::kUInt8;
  if (s == "bfloat16") return attn::kBFloat16;
  throw std::invalid_argument("fixture: unknown dtype name '" + s + "'");
}

struct InputSpec {
  DType dtype = attn::kFloat32;
  Shape shape;       // of the stored tensor, before the view
  json view;         // [["transpose", 0, 1], ...]
  bool grad = false;  // the op input becomes a leaf that requires grad; "grad_in<i>" is stored
  std::string desc;  // "transpose(0, 1) of a float32 (4, 3) tensor"
  std::string name;  // "weight", "running_mean", ... or empty
};
struct OutputSpec {
  std::string key;  // "out" or "out<k>"
  DType dtype = attn::kFloat32;
  Shape shape;
  bool grad = false;  // "grad_<key>" is stored and fed to backward
};
struct FixtureCase {
  std::string name, op;
  json args;
  std::vector<InputSpec> inputs;
  std::vector<OutputSpec> outputs;
  double rtol = 1e-5, atol = 1e-5;
  bool any_input_grad() const {
    for (const auto& i : inputs)
      if (i.grad) return true;
    return false;
  }
};

// Applies one recorded view chain (see make_fixtures.py apply_view) with attn's Tensor methods.
inline Tensor apply_view(Tensor t, const json& steps) {
  for (const json& s : steps) {
    const std::string name = s.at(0).get<std::string>();
    if (name == "transpose") t = t.transpose(s.at(1).get<int64_t>(), s.at(2).get<int64_t>());
    else if (name == "t") t = t.t();
    else if (name == "permute") t = t.permute(s.at(1).get<Shape>());
    else if (name == "slice")
      t = t.slice(s.at(1).get<int64_t>(), s.at(2).get<int64_t>(), s.at(3).get<int64_t>(), s.at(4).get<int64_t>());
    else if (name == "narrow") t = t.narrow(s.at(1).get<int64_t>(), s.at(2).get<int64_t>(), s.at(3).get<int64_t>());
    else if (name == "select") t = t.select(s.at(1).get<int64_t>(), s.at(2).get<int64_t>());
    else if (name == "expand") t = t.expand(s.at(1).get<Shape>());
    else if (name == "unsqueeze") t = t.unsqueeze(s.at(1).get<int64_t>());
    else throw std::invalid_argument("fixture: unknown view step '" + name + "'");
  }
  return t;
}

class Fixtures {
 public:
  // Loads once; throws (with the file name) if a file is missing or malformed.
  static const Fixtures& get() {
    static const Fixtures f(ATTN_FIXTURE_DIR);
    return f;
  }
  // Like get(), but returns the load error instead of throwing (for test registration).
  static const Fixtures* try_get(std::string* error) {
    try {
      return &get();
    } catch (const std::exception& e) {
      if (error) *error = e.what();
      return nullptr;
    }
  }

  explicit Fixtures(const std::string& dir)
      : file_(attn::io::SafeTensorsFile::open(dir + "/ops.safetensors")) {
    const std::string json_path = dir + "/ops.json";
    std::ifstream in(json_path);
    if (!in) throw std::runtime_error("fixture: cannot open " + json_path + " (run tests/make_fixtures.py)");
    json meta;
    try {
      meta = json::parse(in);
      for (const json& c : meta.at("cases")) {
        FixtureCase fc;
        fc.name = c.at("name").get<std::string>();
        fc.op = c.at("op").get<std::string>();
        fc.args = c.at("args");
        fc.rtol = c.at("rtol").get<double>();
        fc.atol = c.at("atol").get<double>();
        for (const json& i : c.at("inputs")) {
          InputSpec s;
          s.dtype = dtype_from_name(i.at("dtype").get<std::string>());
          s.shape = i.at("shape").get<Shape>();
          s.view = i.at("view");
          s.grad = i.at("grad").get<bool>();
          s.desc = i.at("desc").get<std::string>();
          s.name = i.value("name", "");
          fc.inputs.push_back(std::move(s));
        }
        for (const json& o : c.at("outputs")) {
          OutputSpec s;
          s.key = o.at("key").get<std::string>();
          s.dtype = dtype_from_name(o.at("dtype").get<std::string>());
          s.shape = o.at("shape").get<Shape>();
          s.grad = o.at("grad").get<bool>();
          fc.outputs.push_back(std::move(s));
        }
        index_[fc.name] = cases_.size();
        cases_.push_back(std::move(fc));
      }
      for (const auto& [k, v] : meta.at("not_by_fixture").items()) not_by_fixture_[k] = v.get<std::string>();
    } catch (const json::exception& e) {
      throw std::runtime_error("fixture: malformed " + json_path + ": " + e.what());
    }
  }

  const std::vector<FixtureCase>& cases() const { return cases_; }
  const std::map<std::string, std::string>& not_by_fixture() const { return not_by_fixture_; }
  const FixtureCase& find(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) throw std::out_of_range("fixture: no case '" + name + "' in ops.json");
    return cases_[it->second];
  }
  bool contains(const std::string& key) const { return file_.contains(key); }

  // A private contiguous copy of a stored tensor (the file is mapped read-only; ops may write).
  Tensor tensor(const std::string& key) const {
    if (!file_.contains(key)) throw std::out_of_range("fixture: no tensor '" + key + "' in " + file_.path());
    return file_.get(key).clone();
  }

  // The op inputs of a case: stored tensor -> (optional cast of float inputs) -> device -> view -> leaf.
  std::vector<Tensor> inputs(const FixtureCase& c, std::optional<DType> float_dtype = {},
                             attn::Device device = attn::kCPU) const {
    std::vector<Tensor> out;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const InputSpec& s = c.inputs[i];
      Tensor base = tensor(c.name + "/in" + std::to_string(i));
      if (float_dtype && attn::is_floating(base.dtype())) base = base.to(*float_dtype).contiguous();
      base = base.to(device);
      Tensor x = apply_view(base, s.view);
      if (s.grad) {
        x = x.detach();
        x.requires_grad_(true);
      }
      out.push_back(x);
    }
    return out;
  }

 private:
  attn::io::SafeTensorsFile file_;
  std::vector<FixtureCase> cases_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> not_by_fixture_;
};

// "(1, 2)" for flat index `flat` in row-major `shape`.
inline std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    idx[size_t(d)] = shape[size_t(d)] ? flat % shape[size_t(d)] : 0;
    if (shape[size_t(d)]) flat /= shape[size_t(d)];
  }
  std::ostringstream os;
  os << "(";
  for (size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  os << ")";
  return os.str();
}

// Elementwise |actual - expected| <= atol + rtol * |expected| (NaN matches NaN, inf matches inf);
// also checks dtype and shape. The message names `what`, the worst element and its position.
inline ::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, double rtol,
                                                double atol, const std::string& what, bool check_dtype = true) {
  if (!actual.defined()) return ::testing::AssertionFailure() << what << ": result is an undefined Tensor";
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << what << ": shape " << attn::shape_str(actual.shape()) << ", expected "
                                         << attn::shape_str(expected.shape());
  if (check_dtype && actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure() << what << ": dtype " << attn::dtype_name(actual.dtype()) << ", expected "
                                         << attn::dtype_name(expected.dtype());
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  if (a.size() != e.size())
    return ::testing::AssertionFailure() << what << ": to_vector gave " << a.size() << " elements, expected "
                                         << e.size();
  int64_t bad = 0, worst = -1;
  double worst_excess = -1, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double diff;
    if (std::isnan(e[i]) || std::isnan(a[i])) diff = (std::isnan(e[i]) && std::isnan(a[i])) ? 0.0 : INFINITY;
    else if (std::isinf(e[i]) || std::isinf(a[i])) diff = a[i] == e[i] ? 0.0 : INFINITY;
    else diff = std::fabs(a[i] - e[i]);
    const double tol = atol + rtol * (std::isfinite(e[i]) ? std::fabs(e[i]) : 0.0);
    max_abs = std::max(max_abs, diff);
    if (diff > tol) {
      ++bad;
      if (diff - tol > worst_excess) worst_excess = diff - tol, worst = int64_t(i);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(9);
  os << what << ": " << bad << " of " << a.size() << " elements differ (shape " << attn::shape_str(expected.shape())
     << ", rtol " << rtol << ", atol " << atol << "); max abs diff " << max_abs << "; worst at "
     << index_str(expected.shape(), worst) << ": got " << a[size_t(worst)] << ", expected " << e[size_t(worst)];
  return ::testing::AssertionFailure() << os.str();
}

}  // namespace attn_test
