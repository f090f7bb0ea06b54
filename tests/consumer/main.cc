// tests/consumer/main.cc — uses only the installed headers and attn::attn: builds a tiny graph,
// runs backward, checks the gradients against values worked out by hand. Exit 0 on success.
#include <attn/autograd.h>
#include <attn/ops.h>
#include <attn/tensor.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <vector>

int main() {
  try {
    // loss = sum((x @ w)^2) / 2 with x: (1, 2), w: (2, 1)  ->  dloss/dw = x^T (x @ w)
    attn::Tensor x = attn::from_vector<float>({1.0f, 2.0f}, {1, 2});
    attn::Tensor w = attn::from_vector<float>({3.0f, -1.0f}, {2, 1}, {.requires_grad = true});
    attn::Tensor y = attn::matmul(x, w);             // (1, 1): 1*3 + 2*(-1) = 1
    attn::Tensor loss = (y * y).sum() * 0.5;         // 0.5
    loss.backward();
    std::vector<float> g = w.grad().to_vector<float>();  // x^T * y = (1, 2)
    std::printf("loss = %g, dloss/dw = (%g, %g)\n", loss.item(), double(g.at(0)), double(g.at(1)));
    bool ok = std::fabs(loss.item() - 0.5) < 1e-6 && g.size() == 2 && std::fabs(g[0] - 1.0f) < 1e-6f &&
              std::fabs(g[1] - 2.0f) < 1e-6f;
    // a second op family: softmax + cross_entropy, gradient sums to zero over classes
    attn::Tensor logits = attn::randn({4, 3}, {.requires_grad = true});
    attn::Tensor target = attn::from_vector<int64_t>({0, 2, 1, 2}, {4});
    attn::cross_entropy(logits, target).backward();
    double row_sum = attn::max(logits.grad().sum({1}).abs()).item();  // (4, 3) -> (4,) -> 0-d
    std::printf("cross_entropy grad row sums: max |sum| = %g\n", row_sum);
    ok = ok && row_sum < 1e-6;
    std::printf("%s\n", ok ? "consumer OK" : "consumer FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}
