// src/backend/cpu/reference.cc — naive oracle kernels (attn::cpu::ref): serial plain loops, computed in
// double, written for obviousness rather than speed. tests/test_kernels.cc checks every fast kernel
// (both ISAs) against these; they also back the Isa::Reference table (dispatch.cc).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attn/random.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu::ref {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kPi = 3.14159265358979323846;

double gelu_tanh_inner(double x) { return std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x); }
}  // namespace

template <typename T> void softmax(const T* x, T* y, int64_t rows, int64_t d, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < d; ++j) mx = std::max(mx, double(xr[j]));
    double sum = 0.0;
    for (int64_t j = 0; j < d; ++j) sum += std::exp(double(xr[j]) - mx);
    for (int64_t j = 0; j < d; ++j) {
      const double z = double(xr[j]) - mx;
      yr[j] = T(log ? z - std::log(sum) : std::exp(z) / sum);
    }
  }
}

template <typename T> void softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t d, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * d;
    const T* gr = gy + r * d;
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += log ? double(gr[j]) : double(gr[j]) * double(yr[j]);
    for (int64_t j = 0; j < d; ++j) {
      const double v = log ? double(gr[j]) - std::exp(double(yr[j])) * s : double(yr[j]) * (double(gr[j]) - s);
      gx[r * d + j] = T(v);
    }
  }
}

template <typename T, typename S>
void layer_norm(const T* x, const T* w, const T* b, double eps, T* y, S* mean, S* rstd, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * d;
    double mu = 0.0, var = 0.0;
    for (int64_t j = 0; j < d; ++j) mu += double(xr[j]);
    mu /= double(d);
    for (int64_t j = 0; j < d; ++j) var += (double(xr[j]) - mu) * (double(xr[j]) - mu);
    var /= double(d);
    const double rs = 1.0 / std::sqrt(var + eps);
    if (mean) mean[r] = S(mu);
    if (rstd) rstd[r] = S(rs);
    for (int64_t j = 0; j < d; ++j) {
      double v = (double(xr[j]) - mu) * rs;
      if (w) v *= double(w[j]);
      if (b) v += double(b[j]);
      y[r * d + j] = T(v);
    }
  }
}

template <typename T, typename S>
void layer_norm_backward(const T* gy, const T* x, const T* w, const S* mean, const S* rstd, T* gx, T* gw, T* gb,
                         int64_t rows, int64_t d) {
  std::vector<double> sw(size_t(d), 0.0), sb(size_t(d), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double mu = double(mean[r]), rs = double(rstd[r]);
    double mg = 0.0, mgx = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const double xh = (double(x[r * d + j]) - mu) * rs;
      const double g = double(gy[r * d + j]) * (w ? double(w[j]) : 1.0);
      mg += g;
      mgx += g * xh;
      sw[size_t(j)] += double(gy[r * d + j]) * xh;
      sb[size_t(j)] += double(gy[r * d + j]);
    }
    mg /= double(d);
    mgx /= double(d);
    if (!gx) continue;
    for (int64_t j = 0; j < d; ++j) {
      const double xh = (double(x[r * d + j]) - mu) * rs;
      const double g = double(gy[r * d + j]) * (w ? double(w[j]) : 1.0);
      gx[r * d + j] = T(rs * (g - mg - xh * mgx));
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    if (gw) gw[j] = T(sw[size_t(j)]);
    if (gb) gb[j] = T(sb[size_t(j)]);
  }
}

template <typename T> void unary(UnaryOp op, const T* x, T* y, int64_t n, double a) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(x[i]);
    double r = 0.0;
    switch (op) {
      case UnaryOp::Neg: r = -v; break;
      case UnaryOp::Exp: r = std::exp(v); break;
      case UnaryOp::Log: r = std::log(v); break;
      case UnaryOp::Sqrt: r = std::sqrt(v); break;
      case UnaryOp::Rsqrt: r = 1.0 / std::sqrt(v); break;
      case UnaryOp::Abs: r = std::fabs(v); break;
      case UnaryOp::Sin: r = std::sin(v); break;
      case UnaryOp::Cos: r = std::cos(v); break;
      case UnaryOp::Square: r = v * v; break;
      case UnaryOp::Sign: r = std::isnan(v) ? v : double((v > 0) - (v < 0)); break;
      case UnaryOp::Sigmoid: r = 1.0 / (1.0 + std::exp(-v)); break;
      case UnaryOp::Tanh: r = std::tanh(v); break;
      case UnaryOp::Relu: r = std::isnan(v) ? v : std::max(v, 0.0); break;
      case UnaryOp::LeakyRelu: r = v > 0 ? v : v * a; break;
      case UnaryOp::GeluErf: r = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); break;
      case UnaryOp::GeluTanh: r = 0.5 * v * (1.0 + std::tanh(gelu_tanh_inner(v))); break;
      case UnaryOp::LogicalNot: r = v == 0.0 ? 1.0 : 0.0; break;
      case UnaryOp::PowScalar: r = std::pow(v, a); break;
      case UnaryOp::ClampMin: r = std::isnan(v) ? v : std::max(v, a); break;
      case UnaryOp::ClampMax: r = std::isnan(v) ? v : std::min(v, a); break;
      case UnaryOp::MulScalar: r = v * a; break;
      case UnaryOp::AddScalar: r = v + a; break;
    }
    y[i] = T(r);
  }
}

template <typename T> void unary_backward(UnaryGradOp op, const T* xy, const T* gy, T* gx, int64_t n, double a) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(xy[i]), g = double(gy[i]);
    double r = 0.0;
    switch (op) {
      case UnaryGradOp::Sigmoid: r = g * v * (1.0 - v); break;
      case UnaryGradOp::Tanh: r = g * (1.0 - v * v); break;
      case UnaryGradOp::Relu: r = v <= 0.0 ? 0.0 : g; break;
      case UnaryGradOp::LeakyRelu: r = v > 0.0 ? g : g * a; break;
      case UnaryGradOp::GeluErf: {
        const double cdf = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0)));
        const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * kPi);
        r = g * (cdf + v * pdf);
        break;
      }
      case UnaryGradOp::GeluTanh: {
        const double t = std::tanh(gelu_tanh_inner(v));
        const double dinner = std::sqrt(2.0 / kPi) * (1.0 + 3.0 * 0.044715 * v * v);
        r = g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * dinner);
        break;
      }
    }
    gx[i] = T(r);
  }
}

template <typename T>
void binary(BinaryOp op, const T* a, int64_t ap, const T* b, int64_t bp, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double u = double(a[i % ap]), v = double(b[i % bp]);
    double r = kNaN;
    switch (op) {
      case BinaryOp::Add: r = u + v; break;
      case BinaryOp::Sub: r = u - v; break;
      case BinaryOp::Mul: r = u * v; break;
      case BinaryOp::Div: r = u / v; break;
      case BinaryOp::Maximum: r = (std::isnan(u) || std::isnan(v)) ? kNaN : std::max(u, v); break;
      case BinaryOp::Minimum: r = (std::isnan(u) || std::isnan(v)) ? kNaN : std::min(u, v); break;
      default: break;  // not a fast-path op; the oracle leaves NaN
    }
    out[i] = T(r);
  }
}

template <typename T> void reduce(ReduceOp op, const T* x, T* out, int64_t outer, int64_t r, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      double acc = op == ReduceOp::Max ? -INFINITY : op == ReduceOp::Min ? INFINITY : 0.0;
      for (int64_t k = 0; k < r; ++k) {
        const double v = double(x[(o * r + k) * inner + j]);
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) acc += v;
        else if (std::isnan(v) || std::isnan(acc)) acc = kNaN;
        else acc = op == ReduceOp::Max ? std::max(acc, v) : std::min(acc, v);
      }
      out[o * inner + j] = T(op == ReduceOp::Mean ? acc / double(r) : acc);
    }
}

// uniform: element i is lane i%4 of block counter + i/4 (float64: 32 more bits from the same lane
// under key seed ^ kPhiloxLowKey), mapped to lo + (hi - lo) u and kept below hi.
template <typename T> void uniform(T* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter) {
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t block = counter + uint64_t(i / 4);
    const uint32_t word = philox4x32(seed, block).v[i % 4];
    double u;
    if constexpr (sizeof(T) == 4) {
      u = double(uint32_to_unit_float(word));
    } else {
      const uint32_t low = philox4x32(seed ^ kPhiloxLowKey, block).v[i % 4];
      u = uint64_to_unit_double((uint64_t(word) << 32) | low);
    }
    T v = T(lo + (hi - lo) * u);
    if (hi > lo && v >= T(hi)) v = std::nextafter(T(hi), T(lo));
    out[i] = v;
  }
}

// normal: Box-Muller on the pair of 64-bit uniforms of block counter + i/2 (u1 in (0, 1]): even i gets
// r cos(2 pi u2), odd i gets r sin(2 pi u2), r = sqrt(-2 log u1).
template <typename T> void normal(T* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter) {
  for (int64_t i = 0; i < n; ++i) {
    const Philox4 p = philox4x32(seed, counter + uint64_t(i / 2));
    const double u1 = 1.0 - uint64_to_unit_double((uint64_t(p.v[0]) << 32) | p.v[1]);
    const double u2 = uint64_to_unit_double((uint64_t(p.v[2]) << 32) | p.v[3]);
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double z = (i % 2 == 0) ? radius * std::cos(2.0 * kPi * u2) : radius * std::sin(2.0 * kPi * u2);
    out[i] = T(mean + std * z);
  }
}

// torch.optim.Adam _single_tensor_adam, one tensor op per pass in PyTorch's order, scalars rounded to T.
template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad_in, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, int64_t n) {
  std::vector<T> grad(grad_in, grad_in + n);
  if (a.weight_decay != 0.0) {
    if (a.decoupled_weight_decay) {
      const T f = T(1.0 - a.lr * a.weight_decay);
      for (int64_t i = 0; i < n; ++i) param[i] = param[i] * f;  // param.mul_(1 - lr * wd)
    } else {
      const T wd = T(a.weight_decay);
      for (int64_t i = 0; i < n; ++i) grad[size_t(i)] = grad[size_t(i)] + wd * param[i];  // grad.add(param, alpha=wd)
    }
  }
  const T w1 = T(1.0 - a.beta1);
  for (int64_t i = 0; i < n; ++i) {  // exp_avg.lerp_(grad, 1 - beta1)
    const T s = exp_avg[i], e = grad[size_t(i)];
    exp_avg[i] = w1 < T(0.5) ? s + w1 * (e - s) : e - (e - s) * (T(1) - w1);
  }
  const T b2 = T(a.beta2), w2 = T(1.0 - a.beta2);
  for (int64_t i = 0; i < n; ++i) exp_avg_sq[i] = exp_avg_sq[i] * b2;  // mul_(beta2)
  for (int64_t i = 0; i < n; ++i)  // addcmul_(grad, grad, value=1 - beta2)
    exp_avg_sq[i] = exp_avg_sq[i] + w2 * grad[size_t(i)] * grad[size_t(i)];
  const double step = double(a.step);
  const double bias_correction1 = 1.0 - std::pow(a.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(a.beta2, step);
  const double step_size = a.lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  const T* v = exp_avg_sq;
  if (a.amsgrad) {
    for (int64_t i = 0; i < n; ++i)
      max_exp_avg_sq[i] = (std::isnan(double(max_exp_avg_sq[i])) || std::isnan(double(exp_avg_sq[i])))
                              ? T(kNaN)
                              : std::max(max_exp_avg_sq[i], exp_avg_sq[i]);
    v = max_exp_avg_sq;
  }
  std::vector<T> denom(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) denom[size_t(i)] = std::sqrt(v[i]) / T(bias_correction2_sqrt);
  for (int64_t i = 0; i < n; ++i) denom[size_t(i)] = denom[size_t(i)] + T(a.eps);
  const T neg_step = T(-step_size);
  for (int64_t i = 0; i < n; ++i) param[i] = param[i] + neg_step * exp_avg[i] / denom[size_t(i)];
}

#define ATTN_REF_INSTANTIATE(T)                                                                            \
  template void softmax<T>(const T*, T*, int64_t, int64_t, bool);                                           \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool);                        \
  template void unary<T>(UnaryOp, const T*, T*, int64_t, double);                                           \
  template void unary_backward<T>(UnaryGradOp, const T*, const T*, T*, int64_t, double);                    \
  template void binary<T>(BinaryOp, const T*, int64_t, const T*, int64_t, T*, int64_t);                      \
  template void reduce<T>(ReduceOp, const T*, T*, int64_t, int64_t, int64_t);                               \
  template void uniform<T>(T*, int64_t, double, double, uint64_t, uint64_t);                                \
  template void normal<T>(T*, int64_t, double, double, uint64_t, uint64_t);                                 \
  template void adam_step<T>(const backend::AdamArgs&, T*, const T*, T*, T*, T*, int64_t);                  \
  template void layer_norm<T, float>(const T*, const T*, const T*, double, T*, float*, float*, int64_t,      \
                                     int64_t);                                                              \
  template void layer_norm<T, double>(const T*, const T*, const T*, double, T*, double*, double*, int64_t,  \
                                      int64_t);                                                             \
  template void layer_norm_backward<T, float>(const T*, const T*, const T*, const float*, const float*, T*, \
                                              T*, T*, int64_t, int64_t);                                    \
  template void layer_norm_backward<T, double>(const T*, const T*, const T*, const double*, const double*,  \
                                               T*, T*, T*, int64_t, int64_t);
ATTN_REF_INSTANTIATE(float)
ATTN_REF_INSTANTIATE(double)
#undef ATTN_REF_INSTANTIATE

// ---- fused attention (attention.h): one full score row at a time, double accumulation
namespace {
template <typename T> struct At4 {  // element (n, h, i, c) of a strided 4-d ref
  T* p;
  const Shape& st;
  T& operator()(int64_t n, int64_t h, int64_t i, int64_t c) const {
    return p[n * st[0] + h * st[1] + i * st[2] + c * st[3]];
  }
};
template <typename T> double sdpa_mask(const backend::SdpaArgs& a, int64_t n, int64_t h, int64_t i, int64_t j) {
  const double ninf = -std::numeric_limits<double>::infinity();
  double add = 0;
  if (const backend::TensorRef& m = a.attn_mask; m.data) {
    const int64_t off = n * m.strides[0] + h * m.strides[1] + i * m.strides[2] + j * m.strides[3];
    if (m.dtype == kBool) add = static_cast<const bool*>(m.data)[off] ? 0.0 : ninf;
    else add = double(static_cast<const T*>(m.data)[off]);
  }
  if (const backend::TensorRef& m = a.key_padding_mask; m.data) {
    const int64_t off = n * m.strides[0] + j * m.strides[1];
    if (m.dtype == kBool) add += static_cast<const bool*>(m.data)[off] ? ninf : 0.0;
    else add += double(static_cast<const T*>(m.data)[off]);
  }
  if (a.is_causal && j > i) add = ninf;
  return add;
}
// probabilities p (undropped) of row i; false when every key is masked
template <typename T>
bool sdpa_row(const backend::SdpaArgs& a, const At4<const T>& q, const At4<const T>& k, int64_t n, int64_t h,
              int64_t i, std::vector<double>& p, double* lse) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < a.s; ++j) {
    double dot = 0;
    for (int64_t d = 0; d < a.d; ++d) dot += double(q(n, h, i, d)) * double(k(n, h, j, d));
    p[size_t(j)] = dot * a.scale + sdpa_mask<T>(a, n, h, i, j);
    mx = std::max(mx, p[size_t(j)]);
  }
  if (mx == -std::numeric_limits<double>::infinity()) {
    std::fill(p.begin(), p.end(), 0.0);
    *lse = std::numeric_limits<double>::infinity();
    return false;
  }
  double sum = 0;
  for (double& x : p) sum += (x = std::exp(x - mx));
  for (double& x : p) x /= sum;
  *lse = mx + std::log(sum);
  return true;
}
template <typename T> double sdpa_keep_scale(const backend::SdpaArgs& a, int64_t row, int64_t j) {
  if (a.dropout_p <= 0) return 1.0;
  return sdpa_keep(a, row, j) ? 1.0 / (1.0 - a.dropout_p) : 0.0;
}

template <typename T>
void sdpa_forward_t(const backend::SdpaArgs& a, const backend::TensorRef& q_, const backend::TensorRef& k_,
                    const backend::TensorRef& v_, const backend::TensorRef& out_, const backend::TensorRef& lse_) {
  At4<const T> q{static_cast<const T*>(q_.data), q_.strides}, k{static_cast<const T*>(k_.data), k_.strides},
      v{static_cast<const T*>(v_.data), v_.strides};
  At4<T> out{static_cast<T*>(out_.data), out_.strides};
  T* lse = static_cast<T*>(lse_.data);
  std::vector<double> p(size_t(a.s));
  for (int64_t n = 0; n < a.n; ++n)
    for (int64_t h = 0; h < a.h; ++h)
      for (int64_t i = 0; i < a.l; ++i) {
        const int64_t row = (n * a.h + h) * a.l + i;
        double l;
        sdpa_row<T>(a, q, k, n, h, i, p, &l);
        lse[row] = T(l);
        for (int64_t e = 0; e < a.dv; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < a.s; ++j) acc += p[size_t(j)] * sdpa_keep_scale<T>(a, row, j) * double(v(n, h, j, e));
          out(n, h, i, e) = T(acc);
        }
      }
}

template <typename T>
void sdpa_backward_t(const backend::SdpaArgs& a, const backend::TensorRef& q_, const backend::TensorRef& k_,
                     const backend::TensorRef& v_, const backend::TensorRef& go_, const backend::TensorRef& gq_,
                     const backend::TensorRef& gk_, const backend::TensorRef& gv_) {
  At4<const T> q{static_cast<const T*>(q_.data), q_.strides}, k{static_cast<const T*>(k_.data), k_.strides},
      v{static_cast<const T*>(v_.data), v_.strides}, go{static_cast<const T*>(go_.data), go_.strides};
  At4<T> gq{static_cast<T*>(gq_.data), gq_.strides}, gk{static_cast<T*>(gk_.data), gk_.strides},
      gv{static_cast<T*>(gv_.data), gv_.strides};
  std::vector<double> p(size_t(a.s)), dp(size_t(a.s)), dk(size_t(a.s * a.d)), dv(size_t(a.s * a.dv));
  for (int64_t n = 0; n < a.n; ++n)
    for (int64_t h = 0; h < a.h; ++h) {
      std::fill(dk.begin(), dk.end(), 0.0);
      std::fill(dv.begin(), dv.end(), 0.0);
      for (int64_t i = 0; i < a.l; ++i) {
        const int64_t row = (n * a.h + h) * a.l + i;
        double l;
        sdpa_row<T>(a, q, k, n, h, i, p, &l);
        double di = 0;  // sum_j P_j dP_j
        for (int64_t j = 0; j < a.s; ++j) {
          double g = 0;
          for (int64_t e = 0; e < a.dv; ++e) g += double(go(n, h, i, e)) * double(v(n, h, j, e));
          const double ks = sdpa_keep_scale<T>(a, row, j);
          dp[size_t(j)] = g * ks;
          di += p[size_t(j)] * dp[size_t(j)];
          for (int64_t e = 0; e < a.dv; ++e) dv[size_t(j * a.dv + e)] += p[size_t(j)] * ks * double(go(n, h, i, e));
        }
        for (int64_t d = 0; d < a.d; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < a.s; ++j) {
            const double ds = p[size_t(j)] * (dp[size_t(j)] - di) * a.scale;
            acc += ds * double(k(n, h, j, d));
            dk[size_t(j * a.d + d)] += ds * double(q(n, h, i, d));
          }
          gq(n, h, i, d) = T(acc);
        }
      }
      for (int64_t j = 0; j < a.s; ++j) {
        for (int64_t d = 0; d < a.d; ++d) gk(n, h, j, d) = T(dk[size_t(j * a.d + d)]);
        for (int64_t e = 0; e < a.dv; ++e) gv(n, h, j, e) = T(dv[size_t(j * a.dv + e)]);
      }
    }
}
}  // namespace

void sdpa_forward(const backend::SdpaArgs& a, const backend::TensorRef& q, const backend::TensorRef& k,
                  const backend::TensorRef& v, const backend::TensorRef& out, const backend::TensorRef& logsumexp) {
  if (q.dtype == kFloat64) sdpa_forward_t<double>(a, q, k, v, out, logsumexp);
  else sdpa_forward_t<float>(a, q, k, v, out, logsumexp);
}
void sdpa_backward(const backend::SdpaArgs& a, const backend::TensorRef& q, const backend::TensorRef& k,
                   const backend::TensorRef& v, const backend::TensorRef&, const backend::TensorRef&,
                   const backend::TensorRef& grad_out, const backend::TensorRef& grad_q, const backend::TensorRef& grad_k,
                   const backend::TensorRef& grad_v) {
  if (q.dtype == kFloat64) sdpa_backward_t<double>(a, q, k, v, grad_out, grad_q, grad_k, grad_v);
  else sdpa_backward_t<float>(a, q, k, v, grad_out, grad_q, grad_k, grad_v);
}

// find_first: the first match in index order, by the same comparisons as the vector kernels.
int64_t find_first(const float* x, int64_t n, float t, FindCmp cmp, bool or_nan) {
  for (int64_t j = 0; j < n; ++j) {
    const float v = x[j];
    bool hit = false;
    switch (cmp) {
      case FindCmp::Greater: hit = v > t; break;
      case FindCmp::Less: hit = v < t; break;
      case FindCmp::GreaterEqual: hit = v >= t; break;
      case FindCmp::LessEqual: hit = v <= t; break;
    }
    if (hit || (or_nan && v != v)) return j;
  }
  return n;
}

}  // namespace attn::cpu::ref
