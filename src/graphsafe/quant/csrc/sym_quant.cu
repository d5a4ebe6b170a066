// graphsafe's CUDA C++ quantizer: the seed's `scale_andquant_kernel`, fixed (backend="cuda").
//
// Same semantics as graphsafe.quant.reference (per-row symmetric INT4, two values per byte, low nibble
// = even column). What changed against the seed's kernel, and why:
//  * launched on at::cuda::getCurrentCUDAStream() under the input's device guard, so a CUDA-graph
//    capture records it (the seed's `<<<grid, block>>>` escaped the capture), and checked with
//    C10_CUDA_KERNEL_LAUNCH_CHECK;
//  * one block per row on grid.x (the seed put rows on grid.y, limited to 65,535), 64-bit offsets;
//  * the block reduction is correct for any block size (the seed's read smem_max[threadIdx.x] for all
//    32 lanes of warp 0, whatever the number of warps, and its first load read x[row * cols] even for
//    an empty row);
//  * zero rows launch nothing; NaN propagates into the scale, NaN quotients give code 0 (the policy in
//    reference.py); float16 and bfloat16.
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace {

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// Rounds a float32 to T and back: the seed's half-precision steps.
template <typename T> __device__ __forceinline__ float round_to(float v) { return to_float<T>(from_float<T>(v)); }

// max that propagates NaN (fmaxf drops it).
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || a > b) ? a : b; }

template <typename T> __device__ __forceinline__ int code(float x, float scale) {
    float y = round_to<T>(x / scale);  // IEEE division (nvcc's default -prec-div=true)
    if (y != y) return 0;              // NaN: 0/0 in an all-zero row, NaN inputs, Inf/Inf
    y = fminf(fmaxf(y, -8.0f), 7.0f);
    return __float2int_rn(y);          // half to even
}

template <typename T>
__global__ void sym_quant_kernel(const T *__restrict__ x, T *__restrict__ scale, uint8_t *__restrict__ q,
                                 float clip, int64_t cols, int64_t bytes_per_row) {
    extern __shared__ float red[];
    const int64_t row = blockIdx.x;
    const T *xr = x + row * cols;
    uint8_t *qr = q + row * bytes_per_row;

    float m = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = nan_max(fabsf(to_float<T>(xr[c])), m);
    red[threadIdx.x] = m;
    __syncthreads();
    // Tree reduction over any blockDim.x: fold the part above the largest power of two, then halve.
    unsigned p = 1;
    while (p * 2 <= blockDim.x) p *= 2;
    if (threadIdx.x >= p) red[threadIdx.x - p] = nan_max(red[threadIdx.x], red[threadIdx.x - p]);
    __syncthreads();
    for (unsigned s = p / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) red[threadIdx.x] = nan_max(red[threadIdx.x + s], red[threadIdx.x]);
        __syncthreads();
    }
    const T s_t = from_float<T>(round_to<T>(red[0] / 7.0f) * clip);
    if (threadIdx.x == 0) scale[row] = s_t;
    const float s = to_float<T>(s_t);

    for (int64_t b = threadIdx.x; b < bytes_per_row; b += blockDim.x) {
        const int64_t c = 2 * b;
        const int lo = code<T>(to_float<T>(xr[c]), s);
        const int hi = c + 1 < cols ? code<T>(to_float<T>(xr[c + 1]), s) : 0;
        qr[b] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
    }
}

template <typename T>
void launch(const torch::Tensor &x, torch::Tensor &q, torch::Tensor &scale, float clip, int block) {
    const int64_t rows = x.size(0);
    if (rows == 0) return;
    const size_t smem = static_cast<size_t>(block) * sizeof(float);
    sym_quant_kernel<T><<<static_cast<unsigned>(rows), block, smem, at::cuda::getCurrentCUDAStream()>>>(
        reinterpret_cast<const T *>(x.data_ptr()), reinterpret_cast<T *>(scale.data_ptr()),
        q.data_ptr<uint8_t>(), clip, x.size(1), q.size(1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

// sym_quant_into(x, q, scale, clip, block): quantizes x (M, N) into q (M, ceil(N/2)) and scale (M, 1).
// The Python layer validates arguments and names them; these checks guard direct calls.
void sym_quant_into(const torch::Tensor &x, torch::Tensor &q, torch::Tensor &scale, double clip, int64_t block) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.is_contiguous(), "x must be a contiguous 2-D CUDA tensor");
    TORCH_CHECK(q.is_contiguous() && q.scalar_type() == torch::kUInt8 && q.size(0) == x.size(0) &&
                q.size(1) == (x.size(1) + 1) / 2, "q must be contiguous uint8 of shape (M, ceil(N/2))");
    TORCH_CHECK(scale.is_contiguous() && scale.scalar_type() == x.scalar_type() && scale.numel() == x.size(0),
                "scale must be contiguous, of x's dtype, with M elements");
    TORCH_CHECK(block >= 1 && block <= 1024, "block must be in [1, 1024], got ", block);
    TORCH_CHECK(x.size(0) <= INT32_MAX, "too many rows for one grid: ", x.size(0));
    const c10::cuda::CUDAGuard guard(x.device());
    if (x.scalar_type() == torch::kHalf) {
        launch<__half>(x, q, scale, static_cast<float>(clip), static_cast<int>(block));
    } else {
        TORCH_CHECK(x.scalar_type() == torch::kBFloat16, "x must be float16 or bfloat16");
        launch<__nv_bfloat16>(x, q, scale, static_cast<float>(clip), static_cast<int>(block));
    }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("sym_quant_into", &sym_quant_into, "per-row symmetric INT4 quantization (graph-safe)",
          pybind11::arg("x"), pybind11::arg("q"), pybind11::arg("scale"), pybind11::arg("clip"),
          pybind11::arg("block") = 256);
}
