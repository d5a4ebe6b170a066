// Labelled fixture (written for graphsafe): correct code, including tricky forms. No GSC001 anywhere.
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#define LAUNCH_ON(kernel, grid, block, stream, ...) kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#define LAUNCH_CURRENT(kernel, n) kernel<<<1, n, 0, at::cuda::getCurrentCUDAStream()>>>(n)

__global__ void fill(float* y, int n);
template <int N> __global__ void tiled(float* y, int n);

void direct(float* y, int n) {
  fill<<<1, 32, 0, at::cuda::getCurrentCUDAStream()>>>(y, n);
  fill<<<1, 32, 0, c10::cuda::getCurrentCUDAStream()>>>(y, n);
  fill<<<1, 32, 0, at::cuda::getCurrentCUDAStream(y == nullptr ? 0 : 1)>>>(y, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void via_variables(float* y, int n) {
  const at::cuda::OptionalCUDAGuard guard(0);
  auto stream = at::cuda::getCurrentCUDAStream();
  fill<<<1, 32, 0, stream>>>(y, n);
  cudaStream_t raw = stream.stream();
  tiled<64><<<1, 64, 0, raw>>>(y, n);
  cudaStream_t s = 0;
  s = at::cuda::getCurrentCUDAStream();  // reassigned before use
  fill<<<1, 32, 0, s>>>(y, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void helper(float* y, int n, cudaStream_t stream) {
  fill<<<1, 32, 0, stream>>>(y, n);  // a parameter: the caller chooses
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void forwards(float* y, int n) {
  helper(y, n, at::cuda::getCurrentCUDAStream());
  LAUNCH_ON(fill, 1, 32, at::cuda::getCurrentCUDAStream(), y, n);
  LAUNCH_CURRENT(fill, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void launch_config(float* y, int n, cudaStream_t st) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(1);
  cfg.blockDim = dim3(32);
  cfg.stream = at::cuda::getCurrentCUDAStream();
  cudaLaunchKernelEx(&cfg, fill, y, n);
  cudaLaunchConfig_t cfg2 = {.gridDim = dim3(1), .blockDim = dim3(32), .stream = st};
  cudaLaunchKernelEx(&cfg2, fill, y, n);
}

void launch_config_param(const cudaLaunchConfig_t& config, float* y, int n) {
  cudaLaunchKernelEx(&config, fill, y, n);
}

void runtime_api(void** args, cudaStream_t st) {
  cudaLaunchKernel((void*)fill, dim3(1), dim3(32), args, 0, st);
  cudaLaunchKernel((void*)fill, dim3(1), dim3(32), args, 0, at::cuda::getCurrentCUDAStream());
}

void driver_api(CUfunction f, void** params, CUstream hs) {
  cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, hs, params, nullptr);
}

void copies(float* d, const float* h, size_t bytes) {
  auto stream = at::cuda::getCurrentCUDAStream();
  cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream);
  cudaMemsetAsync(d, 0, bytes, stream.stream());
}

struct Launcher {
  cudaStream_t stream_;  // a member set elsewhere: not judged
  void run(float* y, int n) {
    fill<<<1, 32, 0, stream_>>>(y, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

void ternary(float* y, int n, cudaStream_t a, cudaStream_t b, bool c) {
  fill<<<1, 32, 0, c ? a : b>>>(y, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void not_a_stream(float* y, int n) {
  const int zero = 0;
  fill<<<1, 32, zero * 4, at::cuda::getCurrentCUDAStream()>>>(y, n);  // 0 as shared memory is fine
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
