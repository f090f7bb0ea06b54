// tests/gradcheck.h — finite-difference gradient check in float64.
//
//   Tensor a = attn::randn({3, 4}, {.dtype = attn::kFloat64, .requires_grad = true});
//   Tensor b = attn::randn({4, 3}, {.dtype = attn::kFloat64}).t().detach();   // non-contiguous leaf
//   b.requires_grad_(true);
//   EXPECT_TRUE(attn_test::gradcheck([](const std::vector<Tensor>& v) { return attn::mul(v[0], v[1]); }, {a, b}));
//
// For random upstream gradients r_k (one per float output with history), L(x) = sum_k <out_k(x), r_k>.
// Autograd gives dL/dx in one backward pass; each element is then compared with the central difference
// sum_k <out_k(x + eps e_j) - out_k(x - eps e_j), r_k> / (2 eps), eps = 1e-6, passing if
// |a - n| <= atol + rtol |n| (rtol 1e-5, atol 1e-6). A wrong gradient changes this vector-Jacobian product for almost every r,
// so one projection checks the whole Jacobian (PyTorch's fast_mode gradcheck does the same).
// Inputs may be non-contiguous views (each element is perturbed where it lives in storage), but not
// overlapping ones (expanded, stride 0): those cannot be perturbed one element at a time.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "attn/tensor.h"

namespace attn_test {

using GradFn = std::function<std::vector<attn::Tensor>(const std::vector<attn::Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;
  double rtol = 1e-5;
  double atol = 1e-6;
  uint64_t seed = 12345;  // for the upstream gradients
};

namespace detail {

// Storage offsets (in elements, relative to element 0) of `t`'s elements in row-major order.
inline std::vector<int64_t> element_offsets(const attn::Tensor& t) {
  const int64_t n = t.numel(), nd = t.dim();
  std::vector<int64_t> offs(static_cast<size_t>(n)), idx(static_cast<size_t>(nd), 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = 0;
    for (int64_t d = 0; d < nd; ++d) off += idx[size_t(d)] * t.stride(d);
    offs[size_t(e)] = off;
    for (int64_t d = nd - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < t.size(d)) break;
      idx[size_t(d)] = 0;
    }
  }
  return offs;
}

inline bool has_overlap(const attn::Tensor& t) {
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.stride(d) == 0 && t.size(d) > 1) return true;
  return false;
}

inline std::string index_of(const attn::Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    idx[size_t(d)] = flat % shape[size_t(d)];
    flat /= shape[size_t(d)];
  }
  std::ostringstream os;
  os << "(";
  for (size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  os << ")";
  return os.str();
}

}  // namespace detail

// Checks autograd against central differences for every float64 input that requires grad.
inline ::testing::AssertionResult gradcheck(const GradFn& fn, const std::vector<attn::Tensor>& inputs,
                                            const GradcheckOptions& opt = {}) {
  using attn::Tensor;
  std::vector<size_t> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    if (x.dtype() != attn::kFloat64)
      return ::testing::AssertionFailure() << "gradcheck: input " << i << " is " << attn::dtype_name(x.dtype())
                                           << "; use float64 inputs";
    if (!x.is_leaf()) return ::testing::AssertionFailure() << "gradcheck: input " << i << " is not a leaf";
    if (detail::has_overlap(x))
      return ::testing::AssertionFailure() << "gradcheck: input " << i << " has overlapping (expanded) memory";
    x.impl()->grad.reset();
    checked.push_back(i);
  }
  if (checked.empty()) return ::testing::AssertionFailure() << "gradcheck: no float64 input requires grad";

  // Analytical: one backward pass with random upstream gradients.
  std::vector<Tensor> outs;
  try {
    outs = fn(inputs);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "gradcheck: forward threw: " << e.what();
  }
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> normal;
  std::vector<std::vector<double>> r(outs.size());
  std::vector<Tensor> roots, grads;
  for (size_t k = 0; k < outs.size(); ++k) {
    const Tensor& o = outs[k];
    if (!o.defined() || !attn::is_floating(o.dtype())) continue;
    // Float outputs without history (e.g. batch_norm's running stats) are constants here; an output
    // that should have history but lacks it shows up below as "no gradient reached it".
    if (!o.requires_grad()) continue;
    if (o.dtype() != attn::kFloat64)
      return ::testing::AssertionFailure() << "gradcheck: output " << k << " is " << attn::dtype_name(o.dtype())
                                           << ", expected float64 for float64 inputs";
    r[k].resize(size_t(o.numel()));
    for (double& v : r[k]) v = normal(rng);
    roots.push_back(o);
    grads.push_back(attn::from_vector<double>(r[k], o.shape()));
  }
  if (roots.empty()) return ::testing::AssertionFailure() << "gradcheck: no output requires grad";
  try {
    attn::autograd::backward(roots, grads);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "gradcheck: backward threw: " << e.what();
  }
  outs.clear();
  roots.clear();

  // <out(x+) - out(x-), r> summed per element: no cancellation against large constant outputs.
  auto outputs = [&]() {
    attn::NoGradGuard ng;
    std::vector<Tensor> o = fn(inputs);
    std::vector<std::vector<double>> v(r.size());
    for (size_t k = 0; k < o.size() && k < r.size(); ++k)
      if (!r[k].empty()) v[k] = o[k].to_vector<double>();
    return v;
  };
  auto directional = [&](const std::vector<std::vector<double>>& p, const std::vector<std::vector<double>>& m) {
    double d = 0;
    for (size_t k = 0; k < r.size(); ++k)
      for (size_t j = 0; j < r[k].size(); ++j) d += (p[k][j] - m[k][j]) * r[k][j];
    return d;
  };

  std::ostringstream fails;
  fails.precision(10);
  int64_t bad = 0;
  for (size_t i : checked) {
    const Tensor& x = inputs[i];
    Tensor g = x.grad();
    std::vector<double> ga;
    if (g.defined()) {
      if (g.shape() != x.shape())
        return ::testing::AssertionFailure() << "gradcheck: grad of input " << i << " has shape "
                                             << attn::shape_str(g.shape()) << ", input " << attn::shape_str(x.shape());
      ga = g.to_vector<double>();
    } else {
      ga.assign(size_t(x.numel()), 0.0);  // no gradient reached it: must be zero numerically too
    }
    double* base = static_cast<double*>(x.raw_data());
    const std::vector<int64_t> offs = detail::element_offsets(x);
    double worst = -1;
    std::string worst_msg;
    for (size_t j = 0; j < offs.size(); ++j) {
      double& e = base[offs[j]];
      const double orig = e;
      std::vector<std::vector<double>> op, om;
      try {
        e = orig + opt.eps;
        op = outputs();
        e = orig - opt.eps;
        om = outputs();
      } catch (const std::exception& ex) {
        e = orig;
        return ::testing::AssertionFailure() << "gradcheck: forward threw on a perturbed input: " << ex.what();
      }
      e = orig;
      const double num = directional(op, om) / (2 * opt.eps), an = ga[j];
      const double excess = std::fabs(an - num) - (opt.atol + opt.rtol * std::fabs(num));
      if (!(excess <= 0)) {
        ++bad;
        if (!(excess <= worst)) {
          worst = std::isnan(excess) ? INFINITY : excess;
          std::ostringstream m;
          m.precision(10);
          m << "input " << i << " " << attn::shape_str(x.shape()) << " at " << detail::index_of(x.shape(), int64_t(j))
            << ": autograd " << an << ", numerical " << num << (g.defined() ? "" : " (no gradient reached it)");
          worst_msg = m.str();
        }
      }
    }
    if (!worst_msg.empty()) fails << "\n  worst: " << worst_msg;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "gradcheck: " << bad << " gradient elements differ from central differences"
                                       << " (eps " << opt.eps << ", rtol " << opt.rtol << ", atol " << opt.atol << ")"
                                       << fails.str();
}

// Single-output form.
inline ::testing::AssertionResult gradcheck(const std::function<attn::Tensor(const std::vector<attn::Tensor>&)>& fn,
                                            const std::vector<attn::Tensor>& inputs, const GradcheckOptions& opt = {}) {
  return gradcheck(GradFn([&fn](const std::vector<attn::Tensor>& x) { return std::vector<attn::Tensor>{fn(x)}; }),
                   inputs, opt);
}

}  // namespace attn_test
