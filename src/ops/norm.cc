// src/ops/norm.cc — layer_norm (backend kernel) and batch_norm (closed-form backward).
//
//   Tensor y = attn::layer_norm(x, {768}, gamma, beta);            // x: (B, T, 768)
//   Tensor z = attn::batch_norm(img, rm, rv, w, b, /*training=*/true, 0.1, 1e-5);  // (N, C, H, W)
#include <string>

#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {
backend::TensorRef opt_ref(const Tensor& t) { return t.defined() ? ops::ref(t) : backend::TensorRef{}; }
}  // namespace

// ---- layer_norm over the trailing `normalized_shape` dims: the backend kernel on the (rows, d) view
Tensor layer_norm(const Tensor& x, const Shape& ns, const Tensor& weight, const Tensor& bias, double eps) {
  ops::check_defined(x, "layer_norm", "input");
  ops::check_floating(x, "layer_norm");
  const int64_t k = int64_t(ns.size());
  bool ok = k > 0 && x.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = x.size(x.dim() - k + i) == ns[i];
  if (!ok)
    ops::fail("layer_norm: normalized_shape " + shape_str(ns) + " does not match the trailing dims of input " +
              shape_str(x.shape()));
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && p->shape() != ns)
      ops::fail(std::string("layer_norm: ") + (p == &weight ? "weight" : "bias") + " has shape " +
                shape_str(p->shape()) + ", expected normalized_shape " + shape_str(ns));
  if (x.dtype() == kBFloat16)
    return layer_norm(x.to(kFloat32), ns, weight.defined() ? weight.to(kFloat32) : weight,
                      bias.defined() ? bias.to(kFloat32) : bias, eps)
        .to(kBFloat16);
  const DType dt = x.dtype();
  const int64_t d = numel_of(ns), rows = d > 0 ? x.numel() / d : 0;
  Tensor x2 = x.detach().contiguous().view({rows, d});                                // (rows, d)
  Tensor w2 = weight.defined() ? weight.detach().to(dt).contiguous().view({d}) : Tensor();  // (d)
  Tensor b2 = bias.defined() ? bias.detach().to(dt).contiguous().view({d}) : Tensor();
  Tensor y = ops::empty_out({rows, d}, dt, x.device());
  Tensor mu = ops::empty_out({rows}, dt, x.device()), rstd = ops::empty_out({rows}, dt, x.device());
  if (rows > 0 && d > 0)
    ops::be(x).layer_norm(ops::ref(x2), opt_ref(w2), opt_ref(b2), eps, ops::ref(y), ops::ref(mu), ops::ref(rstd));
  Tensor out = y.view(x.shape());
  Shape xs = x.shape();
  bool gx_on = x.requires_grad(), gw_on = weight.defined() && weight.requires_grad(),
       gb_on = bias.defined() && bias.requires_grad();
  DType wdt = weight.defined() ? weight.dtype() : dt, bdt = bias.defined() ? bias.dtype() : dt;
  record("layer_norm", out, {x, weight, bias},
         [x2, w2, mu, rstd, xs, ns, rows, d, gx_on, gw_on, gb_on, wdt, bdt](const Tensor& g) -> std::vector<Tensor> {
           Tensor gy = g.contiguous().view({rows, d});
           Tensor gx = gx_on ? ops::empty_like_out(x2) : Tensor();
           Tensor gw = gw_on ? ops::empty_out({d}, x2.dtype(), x2.device()) : Tensor();
           Tensor gb = gb_on ? ops::empty_out({d}, x2.dtype(), x2.device()) : Tensor();
           if (d > 0)
             ops::be(x2).layer_norm_backward(ops::ref(gy), ops::ref(x2), opt_ref(w2), ops::ref(mu), ops::ref(rstd),
                                             opt_ref(gx), opt_ref(gw), opt_ref(gb));
           return {gx_on ? gx.view(xs) : Tensor(), gw_on ? gw.view(ns).to(wdt) : Tensor(),
                   gb_on ? gb.view(ns).to(bdt) : Tensor()};
         },
         {x2, w2});
  return out;
}

// ---- batch_norm over (N, C, *): statistics per channel over N and the trailing dims
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  ops::check_defined(x, "batch_norm", "input");
  ops::check_floating(x, "batch_norm");
  if (x.dim() < 2) ops::fail("batch_norm: input must be (N, C) or (N, C, *), got " + shape_str(x.shape()));
  const int64_t n = x.size(0), c = x.size(1), s = c > 0 && n > 0 ? x.numel() / (n * c) : 0;
  const char* names[] = {"running_mean", "running_var", "weight", "bias"};
  const Tensor* params[] = {&running_mean, &running_var, &weight, &bias};
  for (int i = 0; i < 4; ++i)
    if (params[i]->defined() && params[i]->shape() != Shape{c})
      ops::fail(std::string("batch_norm: ") + names[i] + " has shape " + shape_str(params[i]->shape()) +
                ", expected " + shape_str(Shape{c}) + " for input " + shape_str(x.shape()));
  if (!training && (!running_mean.defined() || !running_var.defined()))
    ops::fail("batch_norm: running_mean and running_var must be defined in evaluation mode");
  if (x.dtype() == kBFloat16)
    return batch_norm(x.to(kFloat32), running_mean, running_var, weight.defined() ? weight.to(kFloat32) : weight,
                      bias.defined() ? bias.to(kFloat32) : bias, training, momentum, eps)
        .to(kBFloat16);
  const int64_t count = n * s;  // values per channel
  if (training && count <= 1)
    ops::fail("batch_norm: expected more than 1 value per channel when training, got input of shape " +
              shape_str(x.shape()));
  const DType dt = x.dtype();
  Tensor xhat, rstd, w, out;
  {
    NoGradGuard ng;
    Tensor x3 = x.detach().reshape({n, c, s});  // (N, C, S)
    Tensor mu;
    if (training) {
      mu = mean(x3, {0, 2});                              // (C)
      Tensor xc = sub(x3, mu.view({1, c, 1}));
      Tensor var_b = mean(mul(xc, xc), {0, 2});          // biased: used to normalise
      rstd = rsqrt(add(var_b, eps));
      xhat = mul(xc, rstd.view({1, c, 1}));
      Tensor rm = running_mean, rv = running_var;  // updated in place
      if (rm.defined()) rm.copy_(add(mul(rm, 1.0 - momentum), mul(mu.to(rm.dtype()), momentum)));
      if (rv.defined()) {
        Tensor var_u = mul(var_b, double(count) / double(count - 1));  // unbiased: goes into running_var
        rv.copy_(add(mul(rv, 1.0 - momentum), mul(var_u.to(rv.dtype()), momentum)));
      }
    } else {
      mu = running_mean.detach().to(dt);
      rstd = rsqrt(add(running_var.detach().to(dt), eps));
      xhat = mul(sub(x3, mu.view({1, c, 1})), rstd.view({1, c, 1}));
    }
    Tensor y = xhat;
    if (weight.defined()) w = weight.detach().to(dt), y = mul(y, w.view({1, c, 1}));
    if (bias.defined()) y = add(y, bias.detach().to(dt).view({1, c, 1}));
    if (y.is_same(xhat)) y = xhat.clone();
    out = y.view(x.shape());
  }
  Shape xs = x.shape();
  bool gx_on = x.requires_grad(), gw_on = weight.defined() && weight.requires_grad(),
       gb_on = bias.defined() && bias.requires_grad();
  DType wdt = weight.defined() ? weight.dtype() : dt, bdt = bias.defined() ? bias.dtype() : dt;
  record("batch_norm", out, {x, weight, bias},
         [xhat, rstd, w, xs, n, c, s, count, training, gx_on, gw_on, gb_on, wdt, bdt](const Tensor& g) -> std::vector<Tensor> {
           Tensor g3 = g.reshape({n, c, s});
           Tensor s1 = sum(g3, {0, 2});             // Σ g, (C)
           Tensor s2 = sum(mul(g3, xhat), {0, 2});  // Σ g·x̂, (C)
           Tensor gx;
           if (gx_on) {
             Tensor k = w.defined() ? mul(w, rstd) : rstd;  // (C)
             if (training) {
               // gx = w·rstd·(g − Σg/n − x̂·Σ(g·x̂)/n)
               Tensor k2 = div(mul(k, s2), double(count)), k3 = div(mul(k, s1), double(count));
               gx = sub(sub(mul(g3, k.view({1, c, 1})), mul(xhat, k2.view({1, c, 1}))), k3.view({1, c, 1}));
             } else {
               gx = mul(g3, k.view({1, c, 1}));
             }
             gx = gx.view(xs);
           }
           return {gx, gw_on ? s2.to(wdt) : Tensor(), gb_on ? s1.to(bdt) : Tensor()};
         });
  return out;
}

}  // namespace attn
