// Small CUDA ops for the bug zoo: each unsafe launch or allocation has a safe twin beside it.
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>

namespace {

__global__ void affine_kernel(const float* __restrict__ x, float* __restrict__ out, float a, float b, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a * x[i] + b;
}

void check_input(const torch::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "x must be float32");
  TORCH_CHECK(x.is_contiguous(), "x must be contiguous");
}

int blocks_for(int64_t n) { return static_cast<int>((n + 255) / 256); }

}  // namespace

// Escapes capture: the per-thread default stream is not part of PyTorch's capture.
torch::Tensor scale_per_thread(torch::Tensor x) {
  check_input(x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = torch::empty_like(x);
  int64_t n = x.numel();
  affine_kernel<<<blocks_for(n), 256, 0, cudaStreamPerThread>>>(x.data_ptr<float>(), out.data_ptr<float>(), 2.f, 0.f, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// The fixed twin: PyTorch's current stream, which is the capturing stream during capture.
torch::Tensor scale_current(torch::Tensor x) {
  check_input(x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = torch::empty_like(x);
  int64_t n = x.numel();
  affine_kernel<<<blocks_for(n), 256, 0, at::cuda::getCurrentCUDAStream()>>>(
      x.data_ptr<float>(), out.data_ptr<float>(), 2.f, 0.f, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// Breaks capture: a raw cudaMalloc/cudaFree for scratch memory (not stream-ordered).
torch::Tensor affine_raw_scratch(torch::Tensor x) {
  check_input(x);
  const c10::cuda::CUDAGuard guard(x.device());
  int64_t n = x.numel();
  auto stream = at::cuda::getCurrentCUDAStream();
  float* scratch = nullptr;
  C10_CUDA_CHECK(cudaMalloc(&scratch, n * sizeof(float)));
  auto out = torch::empty_like(x);
  affine_kernel<<<blocks_for(n), 256, 0, stream>>>(x.data_ptr<float>(), scratch, 2.f, 0.f, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  affine_kernel<<<blocks_for(n), 256, 0, stream>>>(scratch, out.data_ptr<float>(), 1.f, 1.f, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  C10_CUDA_CHECK(cudaFree(scratch));
  return out;
}

// The fixed twin: scratch from PyTorch's caching allocator, stream-ordered and capturable.
torch::Tensor affine_scratch(torch::Tensor x) {
  check_input(x);
  const c10::cuda::CUDAGuard guard(x.device());
  int64_t n = x.numel();
  auto stream = at::cuda::getCurrentCUDAStream();
  auto scratch = torch::empty_like(x);
  auto out = torch::empty_like(x);
  affine_kernel<<<blocks_for(n), 256, 0, stream>>>(x.data_ptr<float>(), scratch.data_ptr<float>(), 2.f, 0.f, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  affine_kernel<<<blocks_for(n), 256, 0, stream>>>(scratch.data_ptr<float>(), out.data_ptr<float>(), 1.f, 1.f, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scale_per_thread", &scale_per_thread, "2*x on the per-thread default stream (escapes capture)");
  m.def("scale_current", &scale_current, "2*x on the current stream");
  m.def("affine_raw_scratch", &affine_raw_scratch, "2*x+1 through cudaMalloc'd scratch (breaks capture)");
  m.def("affine_scratch", &affine_scratch, "2*x+1 through caching-allocator scratch");
}
