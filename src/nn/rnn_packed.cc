// src/nn/rnn_packed.cc — pack_padded_sequence / pad_packed_sequence (torch.nn.utils.rnn).
//
// Both are compositions of differentiable ops (index_select, narrow, cat, stack), so gradients flow
// through packing and unpacking; padded positions get no gradient.
#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "attn/nn/rnn.h"
#include "attn/ops.h"

namespace attn::nn::utils {

namespace {

std::vector<int64_t> offsets_of(const std::vector<int64_t>& batch_sizes) {
  std::vector<int64_t> off(batch_sizes.size(), 0);
  for (size_t t = 1; t < batch_sizes.size(); ++t) off[t] = off[t - 1] + batch_sizes[t - 1];
  return off;
}

// Checks the lengths against the time-major input (T, B, *) and returns the sorted order (longest first).
std::vector<int64_t> sorted_order(const Tensor& x, const std::vector<int64_t>& lengths, const PackOptions& o,
                                  const Shape& input_shape) {
  const std::string who = "pack_padded_sequence";
  const int64_t T = x.size(0), B = x.size(1);
  if (int64_t(lengths.size()) != B)
    throw std::invalid_argument(who + ": " + std::to_string(lengths.size()) + " lengths for a batch of " +
                                std::to_string(B) + " (input " + shape_str(input_shape) +
                                (o.batch_first ? ", batch_first" : "") + ")");
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] <= 0)
      throw std::invalid_argument(who + ": length " + std::to_string(lengths[i]) + " at index " + std::to_string(i) +
                                  "; every sequence needs at least one step");
    if (lengths[i] > T)
      throw std::invalid_argument(who + ": length " + std::to_string(lengths[i]) + " at index " + std::to_string(i) +
                                  " is longer than the input's " + std::to_string(T) + " time steps (input " +
                                  shape_str(input_shape) + ")");
    if (o.enforce_sorted && i > 0 && lengths[i] > lengths[i - 1])
      throw std::invalid_argument(who + ": lengths must be non-increasing with enforce_sorted (index " +
                                  std::to_string(i) + " has " + std::to_string(lengths[i]) + " after " +
                                  std::to_string(lengths[i - 1]) + "); pass enforce_sorted = false to sort them");
  }
  std::vector<int64_t> order(static_cast<size_t>(B));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return lengths[size_t(a)] > lengths[size_t(b)]; });
  return order;
}

}  // namespace

PackedSequence pack_padded_sequence(const Tensor& input, const std::vector<int64_t>& lengths, const PackOptions& o) {
  const std::string who = "pack_padded_sequence";
  if (!input.defined() || input.dim() < 2)
    throw std::invalid_argument(who + ": input must have at least 2 dims (T, B, *), got " +
                                (input.defined() ? shape_str(input.shape()) : std::string("an undefined tensor")));
  Tensor x = o.batch_first ? input.transpose(0, 1) : input;
  if (x.size(1) == 0) throw std::invalid_argument(who + ": empty batch (input " + shape_str(input.shape()) + ")");
  std::vector<int64_t> order = sorted_order(x, lengths, o, input.shape());
  const int64_t B = x.size(1);
  PackedSequence p;
  if (!o.enforce_sorted) {
    std::vector<int64_t> inverse(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) inverse[size_t(order[size_t(i)])] = i;
    p.sorted_indices = from_vector<int64_t>(order, {B}).to(input.device());
    p.unsorted_indices = from_vector<int64_t>(inverse, {B}).to(input.device());
    x = index_select(x, 1, p.sorted_indices);
  }
  const int64_t T = lengths[size_t(order[0])];
  for (int64_t t = 0; t < T; ++t) {
    int64_t bs = 0;
    for (int64_t len : lengths) bs += len > t;
    p.batch_sizes.push_back(bs);
  }
  if (p.batch_sizes.back() == B) {  // no padding to drop: one reshape
    Shape s = x.shape();
    s.erase(s.begin());
    s[0] = T * B;
    p.data = x.narrow(0, 0, T).reshape(s);
    return p;
  }
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < T; ++t) steps.push_back(x.select(0, t).narrow(0, 0, p.batch_sizes[size_t(t)]));
  p.data = cat(steps, 0);
  return p;
}

PaddedSequence pad_packed_sequence(const PackedSequence& seq, const PadOptions& o) {
  const std::string who = "pad_packed_sequence";
  const std::vector<int64_t>& bs = seq.batch_sizes;
  if (!seq.data.defined() || seq.data.dim() < 1)
    throw std::invalid_argument(who + ": the packed sequence has no data");
  if (bs.empty()) throw std::invalid_argument(who + ": the packed sequence has no time steps");
  int64_t total = 0;
  for (size_t t = 0; t < bs.size(); ++t) {
    if (bs[t] <= 0 || (t > 0 && bs[t] > bs[t - 1]))
      throw std::invalid_argument(who + ": batch_sizes must be positive and non-increasing (step " +
                                  std::to_string(t) + " has " + std::to_string(bs[t]) + ")");
    total += bs[t];
  }
  if (total != seq.data.size(0))
    throw std::invalid_argument(who + ": batch_sizes add up to " + std::to_string(total) + " rows, data has " +
                                std::to_string(seq.data.size(0)));
  const int64_t T = int64_t(bs.size()), B = bs[0];
  if (o.total_length != -1 && o.total_length < T)
    throw std::invalid_argument(who + ": total_length " + std::to_string(o.total_length) +
                                " is shorter than the longest sequence (" + std::to_string(T) + ")");
  const int64_t T_out = o.total_length == -1 ? T : o.total_length;
  Shape row_shape = seq.data.shape();
  row_shape.erase(row_shape.begin());
  const TensorOptions like{.dtype = seq.data.dtype(), .device = seq.data.device()};
  const std::vector<int64_t> off = offsets_of(bs);
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < T; ++t) {
    Tensor rows = seq.data.narrow(0, off[size_t(t)], bs[size_t(t)]);
    if (bs[size_t(t)] < B) {
      Shape pad = row_shape;
      pad.insert(pad.begin(), B - bs[size_t(t)]);
      rows = cat({rows, full(pad, o.padding_value, like)}, 0);
    }
    steps.push_back(rows);
  }
  Tensor padded = stack(steps, 0);  // (T, B, *)
  if (T_out > T) {
    Shape pad = padded.shape();
    pad[0] = T_out - T;
    padded = cat({padded, full(pad, o.padding_value, like)}, 0);
  }
  std::vector<int64_t> sorted_lengths(size_t(B), 0);
  for (int64_t b : bs)
    for (int64_t i = 0; i < b; ++i) ++sorted_lengths[size_t(i)];
  std::vector<int64_t> lengths = sorted_lengths;
  if (seq.unsorted_indices.defined()) {
    padded = index_select(padded, 1, seq.unsorted_indices);
    // A device-to-host copy of B indices through the tensor API (the lengths are host values).
    const std::vector<int64_t> unsorted = seq.unsorted_indices.to_vector<int64_t>();
    if (int64_t(unsorted.size()) != B)
      throw std::invalid_argument(who + ": unsorted_indices has " + std::to_string(unsorted.size()) +
                                  " entries for a batch of " + std::to_string(B));
    for (int64_t j = 0; j < B; ++j) {
      const int64_t s = unsorted[size_t(j)];
      if (s < 0 || s >= B) throw std::invalid_argument(who + ": unsorted_indices holds " + std::to_string(s));
      lengths[size_t(j)] = sorted_lengths[size_t(s)];
    }
  }
  if (o.batch_first) padded = padded.transpose(0, 1);
  return {padded, lengths};
}

}  // namespace attn::nn::utils
