// src/ops/autocast.h — the cast decision ops make at entry under attn::Autocast (include/attn/autocast.h).
// An op listed in the policy table of autocast.cc starts with one line:
//
//   if (ops::autocast::active()) return ops::autocast::redispatch("linear", linear_fn, x, weight, bias);
//
// redispatch looks the op up in the table, casts its floating Tensor arguments to the dtype the table
// says (other arguments pass through), and calls the op again with autocast suspended (as PyTorch's
// dispatcher excludes the Autocast key while the op runs).
#pragma once
#include <string_view>
#include <type_traits>
#include <utility>

#include "attn/autocast.h"
#include "attn/ops.h"
#include "attn/tensor.h"

namespace attn::ops::autocast {

// Float32Reads: as Float32 (float32 math, a float32 result), but a bf16 input is passed on as it is and
// the op reads it in float32 itself (the fused cross-entropy: no float32 copy of the logits, a bf16
// gradient for them written once). float32_reads() tells the op it runs under this policy.
enum class CastPolicy { LowerPrecision, Float32, Float32Reads };

bool active();                          // autocast on and not already inside an op's redispatch
CastPolicy policy_of(std::string_view op);  // throws std::logic_error for an op missing from the table
DType target_dtype(CastPolicy p);       // the autocast dtype, or kFloat32
// t in `to` (floating, defined tensors only; others are returned as they are). A parameter's bf16 copy
// comes from the per-thread cache, tied to the parameter by a fresh "to" node for autograd.
Tensor cast(const Tensor& t, DType to);

// While alive, active() is false on this thread (and float32_reads() is `reads`).
class Suspend {
 public:
  explicit Suspend(bool reads = false);
  ~Suspend();
  Suspend(const Suspend&) = delete;
  Suspend& operator=(const Suspend&) = delete;

 private:
  bool prev_, prev_reads_;
};
bool float32_reads();  // inside the redispatch of a Float32Reads op

template <class A> decltype(auto) cast_arg(const A& a, DType to) {
  if constexpr (std::is_same_v<A, Tensor>)
    return cast(a, to);
  else if constexpr (std::is_same_v<A, HeadBlock>)
    return HeadBlock{cast(a.source, to), a.column};
  else
    return (a);
}

template <class F, class... Args> auto redispatch(std::string_view op, F&& fn, const Args&... args) {
  const CastPolicy p = policy_of(op);
  if (p == CastPolicy::Float32Reads) {
    Suspend inside(/*reads=*/true);
    return std::forward<F>(fn)(args...);
  }
  const DType to = target_dtype(p);
  Suspend inside;
  return std::forward<F>(fn)(cast_arg(args, to)...);
}

// Number of parameter copies made since the start of the process (tests: one per version).
int64_t parameter_casts();

}  // namespace attn::ops::autocast
