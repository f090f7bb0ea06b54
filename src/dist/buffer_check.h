// src/dist/buffer_check.h — argument checks shared by the communicators.
#pragma once
#include "attn/tensor.h"

namespace attn::dist {

void check_buffer(const Tensor& t, const char* op);  // defined, CPU, contiguous, fp32 / bf16 / fp64
void check_root(int root, int size);

}  // namespace attn::dist
