// Labelled fixture (written for graphsafe): every line with the expectation comment must be reported.
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>

#define LAUNCH_NO_STREAM(kernel, n) kernel<<<(n + 255) / 256, 256>>>(n)  // expect GSC001

namespace ops {

template <typename T>
__global__ void axpy(T* y, const T* x, T a, int n);
__global__ void fill(float* y, int n);

void no_stream(float* y, const float* x, int n) {
  axpy<float><<<(n + 255) / 256, 256>>>(y, x, 2.f, n);  // expect GSC001
  fill<<<1, 32, 128>>>(y, n);  // expect GSC001
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void literal_streams(float* y, int n) {
  fill<<<1, 32, 0, 0>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, nullptr>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, NULL>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, cudaStreamLegacy>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, cudaStreamPerThread>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, (cudaStream_t)0>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, static_cast<cudaStream_t>(nullptr)>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, at::cuda::getDefaultCUDAStream()>>>(y, n);  // expect GSC001
  fill<<<1, 32, 0, c10::cuda::getDefaultCUDAStream().stream()>>>(y, n);  // expect GSC001
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void through_variables(float* y, int n, bool flag) {
  cudaStream_t s = 0;
  fill<<<1, 32, 0, s>>>(y, n);  // expect GSC001
  auto d = at::cuda::getDefaultCUDAStream();
  fill<<<1, 32, 0, d>>>(y, n);  // expect GSC001
  cudaStream_t t;
  t = cudaStreamPerThread;
  fill<<<1, 32, 0, t>>>(y, n);  // expect GSC001
  cudaStream_t u = flag ? at::cuda::getCurrentCUDAStream().stream() : nullptr;
  fill<<<1, 32, 0, u>>>(y, n);  // expect GSC001
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void runtime_api(float* y, int n, void** args) {
  cudaLaunchKernel((void*)fill, dim3(1), dim3(32), args);  // expect GSC001
  cudaLaunchKernel((void*)fill, dim3(1), dim3(32), args, 0, 0);  // expect GSC001
  cudaLaunchCooperativeKernel((void*)fill, dim3(1), dim3(32), args, 0, cudaStreamLegacy);  // expect GSC001
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(1);
  cudaLaunchKernelEx(&cfg, fill, y, n);  // expect GSC001
  cudaLaunchConfig_t cfg2 = {};
  cfg2.stream = 0;
  cudaLaunchKernelEx(&cfg2, fill, y, n);  // expect GSC001
}

void driver_api(CUfunction f, void** params) {
  cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, 0, params, nullptr);  // expect GSC001
  cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, CU_STREAM_LEGACY, params, nullptr);  // expect GSC001
}

void copies(float* d, const float* h, size_t bytes, CUdeviceptr dp) {
  cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice);  // expect GSC001
  cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, 0);  // expect GSC001
  cudaMemsetAsync(d, 0, bytes, cudaStreamPerThread);  // expect GSC001
  cudaMemcpy2DAsync(d, 16, h, 16, 16, 4, cudaMemcpyDeviceToDevice, nullptr);  // expect GSC001
  cuMemcpyHtoDAsync(dp, h, bytes, 0);  // expect GSC001
  cuMemsetD32Async(dp, 0u, 4, CU_STREAM_PER_THREAD);  // expect GSC001
}

struct Op {
  void operator()(float* y, int n) const {
    fill<<<1, 32>>>(y, n);  // expect GSC001
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

void in_lambda(float* y, int n) {
  auto go = [&]() { fill<<<1, 32>>>(y, n); };  // expect GSC001
  go();
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace ops
