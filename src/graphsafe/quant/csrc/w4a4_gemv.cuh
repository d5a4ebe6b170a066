// What the two tensor-core GEMVs for few rows (w4a4_mma.cu on packed activation codes, w4a4_planes.cu on
// the quantizer's activation planes) share: 16-byte loads, the INT8 MMA, and where each thread's outputs go
// and how they are finished. Both map the MMA the same way: the weights are its 16-row A side (rows g and
// g + 8 of a tile in lane 4 g + t), the activation rows its 8-column B side.
//
// Needs the macros TILES, NT, WARPS, CLUSTER, SA_T, SB_T, BIAS_T, OUT_T and HAS_BIAS (w4a4_mma.cu says what
// they mean). NVRTC gets this header in memory, as it gets w4a4_common.cuh.
#pragma once

#include "w4a4_common.cuh"  // u32, to_f32, out_bits

struct W4 { u32 x, y, z, w; };

__device__ __forceinline__ W4 ld_stream(const u32* p) {  // weights: read once, keep out of L1
  W4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

__device__ __forceinline__ W4 ld_shared_input(const u32* p) {  // activations: every block reads them
  W4 r;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

__device__ __forceinline__ u32 word(const W4& v, int j) {
  return j == 0 ? v.x : (j == 1 ? v.y : (j == 2 ? v.z : v.w));
}

__device__ __forceinline__ u32 odd16(u32 w) { return w & 0xF0F0F0F0u; }  // 16 x a word's odd columns' codes
__device__ __forceinline__ u32 even16(u32 w) { return (w << 4) & 0xF0F0F0F0u; }  // and its even columns'

__device__ __forceinline__ void mma(int (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void store(void* p, long long i, float y) { static_cast<OutBits*>(p)[i] = out_bits(y); }

// Where each thread's outputs go, and the operands of their epilogue. The weights' side (w_scale, bias) is
// loaded at the start, with the first weights, and the activation scale once the quantizer has written it,
// so that the last block's tail after its last MMA is the sum and the store, not two more round trips.
struct Out {
  int row, col;
  float sa, sb, bias;
  int xs;  // w4a4_planes.cu: the sum of the activation row's even-column codes
};

__device__ __forceinline__ Out place(int v, int l, int n0, int N, const void* sb, const void* bias) {
  // accumulator v = (r NT + n) 4 + i of lane l = 4 g + t: weight row n0 + 16 r + g + 8 (i / 2), activation
  // row 8 n + 2 t + i % 2
  const int i = v & 3, n = (v >> 2) % NT, r = (v >> 2) / NT;
  Out o{8 * n + 2 * (l & 3) + (i & 1), n0 + 16 * r + (l >> 2) + 8 * (i >> 1), 0.f, 0.f, 0.f};
  if (o.col < N) {
    o.sb = to_f32(sb, o.col, SB_T);
#if HAS_BIAS
    o.bias = to_f32(bias, o.col, BIAS_T);
#endif
  }
  return o;
}

__device__ __forceinline__ void load_scale(Out& o, int M, const void* sa) {
  if (o.row < M) o.sa = to_f32(sa, o.row, SA_T);
}

__device__ __forceinline__ void finish(const Out& o, int dot, int M, int N, void* out, long long stride_c) {
  if (o.row < M && o.col < N) {
    // dot: the exact integer dot product; then the reference's order, in float32 without contraction:
    // (dot * sa) * sb (+ bias)
    float y = __fmul_rn(static_cast<float>(dot), o.sa);
    y = __fmul_rn(y, o.sb);
#if HAS_BIAS
    y = __fadd_rn(y, o.bias);
#endif
    store(out, static_cast<long long>(o.row) * stride_c + o.col, y);
  }
}

constexpr int PER_LANE = TILES * NT * 4;  // accumulators per lane

__device__ __forceinline__ void clear(int (&acc)[TILES][NT][4]) {
#pragma unroll
  for (int r = 0; r < TILES; ++r)
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[r][n][i] = 0;
}
#if WARPS > 1 || CLUSTER > 1
constexpr int OUTS = (PER_LANE * 32 + 32 * WARPS - 1) / (32 * WARPS);  // outputs a thread finishes, at most
__device__ __forceinline__ int out_v(int j) { return (threadIdx.x + j * 32 * WARPS) >> 5; }
__device__ __forceinline__ int out_l(int j) { return (threadIdx.x + j * 32 * WARPS) & 31; }
#else
constexpr int OUTS = PER_LANE;
__device__ __forceinline__ int out_v(int j) { return j; }
__device__ __forceinline__ int out_l(int) { return threadIdx.x & 31; }
#endif
constexpr bool EARLY_OUTS = OUTS <= 4;  // with more, the registers they would hold are better spent on loads

// Where EARLY_OUTS: this thread's outputs placed, their weight scales and bias requested, before the
// PDL wait (none of it comes from the kernel before).
template <int K>
__device__ __forceinline__ void place_early(Out (&outs)[K], int n0, int N, const void* sb, const void* bias) {
  if constexpr (EARLY_OUTS) {
#pragma unroll
    for (int j = 0; j < OUTS; ++j) outs[j] = place(out_v(j), out_l(j), n0, N, sb, bias);
  }
}

// With PDL: wait until the kernel before has finished and its writes are visible, then let the next kernel
// launch (it waits for ours itself; not before our wait, or calls in a row would all launch at once).
__device__ __forceinline__ void wait_then_release() {
#if PDL
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

#if WARPS > 1 || CLUSTER > 1
// The warps of a block split K: each stores its accumulators in shared memory, then the threads that finish
// the outputs add them up (warp_sum).
__device__ __forceinline__ void stash(int (&part)[WARPS][PER_LANE][32], const int (&acc)[TILES][NT][4], int warp,
                                      int lane) {
#pragma unroll
  for (int r = 0; r < TILES; ++r)
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) part[warp][(r * NT + n) * 4 + i][lane] = acc[r][n][i];
  __syncthreads();
}

__device__ __forceinline__ int warp_sum(const int (&part)[WARPS][PER_LANE][32], int v, int l) {
  int sum = 0;
#pragma unroll
  for (int w = 0; w < WARPS; ++w) sum += part[w][v][l];
  return sum;
}
#endif
