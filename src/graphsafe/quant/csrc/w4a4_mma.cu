// W4A4 GEMM for few rows (M <= 16) on INT8 tensor cores: out^T (N x M) = W (N x K) . X^T (K x M).
//
// Compiled at first use by NVRTC (graphsafe/quant/mma_gemv.py), one program per configuration: the
// macros below are set with -D. Its headers (w4a4_gemv.cuh, shared with w4a4_planes.cu, and
// w4a4_common.cuh) NVRTC gets in memory; no CUDA headers: it uses only PTX through inline asm.
//
// The operands stay packed in HBM and L2 (two signed 4-bit codes per byte, low nibble = even column).
// The weights are the MMA's 16-row A side, the activation rows its 8-column B side, so a row count of
// 1 to 8 costs one mma.m16n8k32 per 16 weight rows and 32 codes of K. Each thread loads 16-byte words
// and feeds them to the MMA directly, with no shared memory and no layout change: of the 8 codes of a
// 32-bit word, the even columns (low nibbles) become one A register and the odd columns (high nibbles)
// another, each as 16 x the code (shl + and, and: the nibble lands on top of its byte, sign included).
// The dot product does not care in which order K is summed, so the MMA's K index is mapped onto the
// codes in whatever order the loads deliver them, the same for both operands:
//   thread (g = lane / 4, t = lane % 4) holds word w = c + 16 u + 4 t + j of weight rows g and g + 8
//   and of activation row g; MMA k = 4 t + i  <-> code 8 w + 2 i     (low nibble of byte i)
//                            MMA k = 16 + 4 t + i <-> code 8 w + 2 i + 1 (high nibble of byte i)
// which is exactly the register layout mma.m16n8k32.row.col.s8 expects (PTX ISA, "Matrix fragments
// for mma.m16n8k32"). The int32 accumulator holds 256 x the exact sums.
//
// The WARPS warps of a block split K (word blocks of 16 UNROLL interleaved) and add their accumulators
// through shared memory at the end; one block covers 16 TILES weight rows. With PDL the block requests
// its first weights, and its outputs' weight scales and bias, before it waits for the previous kernel (the
// quantizer: the codes and scales).
//
// Configuration macros: WARPS, TILES, UNROLL, STAGES (steps of loads in flight + 1), CLUSTER (CTAs per
// cluster splitting K; launched with that cluster shape), NT (8-row activation tiles: 1 or 2), SA_T, SB_T,
// BIAS_T, OUT_T (0 float16, 1 bfloat16, 2 float32), HAS_BIAS, PDL.

#include "w4a4_gemv.cuh"  // W4, the loads, mma, the epilogue

struct Tile {  // one step's words: UNROLL per weight row (g, g + 8 of each tile) and activation row
  W4 w[TILES][2][UNROLL];
  W4 x[NT][UNROLL];
};

// Calls f(u, r, h, row, o, in) for each 16-byte weight word of one step from word c: word u of the step,
// at word o of row h of tile r (row: its start), in false past the end of K (then not to be read). The
// register ring loads these words, the shared-memory ring copies them.
template <typename F>
__device__ __forceinline__ void each_weight_word(const u32* const (&wrow)[TILES][2], int c, int kw, F&& f) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    const int o = c + 16 * u;
    const bool in = o < kw;
#pragma unroll
    for (int r = 0; r < TILES; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) f(u, r, h, wrow[r][h], o, in);
  }
}

__device__ __forceinline__ void load_weights(Tile& s, const u32* const (&wrow)[TILES][2], int c, int kw) {
  each_weight_word(wrow, c, kw, [&](int u, int r, int h, const u32* row, int o, bool in) {
    s.w[r][h][u] = in ? ld_stream(row + o) : W4{0, 0, 0, 0};
  });
}

__device__ __forceinline__ void load_inputs(Tile& s, const u32* const (&xrow)[NT], const bool (&xin)[NT], int c,
                                            int kw) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    const int o = c + 16 * u;
#pragma unroll
    for (int n = 0; n < NT; ++n) s.x[n][u] = (xin[n] && o < kw) ? ld_shared_input(xrow[n] + o) : W4{0, 0, 0, 0};
  }
}

__device__ __forceinline__ void multiply_step(int (&acc)[TILES][NT][4], const W4 (&w)[TILES][2], const W4 (&x)[NT]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    u32 b0[NT], b1[NT];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      const u32 v = word(x[n], j);
      b0[n] = even16(v);
      b1[n] = odd16(v);
    }
#pragma unroll
    for (int r = 0; r < TILES; ++r) {
      const u32 lo = word(w[r][0], j), hi = word(w[r][1], j);
      const u32 a0 = even16(lo), a1 = even16(hi), a2 = odd16(lo), a3 = odd16(hi);
#pragma unroll
      for (int n = 0; n < NT; ++n) mma(acc[r][n], a0, a1, a2, a3, b0[n], b1[n]);
    }
  }
}

#if ASYNC
// The ring lives in shared memory instead, filled by cp.async: each thread copies and later reads only its
// own 16-byte slots (so no barrier), and the words in flight take no registers.
constexpr int SLOTS = UNROLL * (2 * TILES + NT);  // 16-byte slots per thread and step

__device__ __forceinline__ void copy16(u32 dst, const u32* src, bool in) {  // zero-fills when !in
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(in ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ u32 slot_addr(u32 base, int stage, int slot) {
  return base + static_cast<u32>((stage * SLOTS + slot) * 32 * WARPS * 16);
}

__device__ __forceinline__ void issue_weights(u32 base, int stage, const u32* const (&wrow)[TILES][2], int c, int kw) {
  each_weight_word(wrow, c, kw, [&](int u, int r, int h, const u32* row, int o, bool in) {
    copy16(slot_addr(base, stage, u * (2 * TILES + NT) + 2 * r + h), in ? row + o : row, in);
  });
}

__device__ __forceinline__ void issue_inputs(u32 base, int stage, const u32* const (&xrow)[NT], const bool (&xin)[NT],
                                             int c, int kw) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    const int o = c + 16 * u;
#pragma unroll
    for (int n = 0; n < NT; ++n)
      if (xin[n]) copy16(slot_addr(base, stage, u * (2 * TILES + NT) + 2 * TILES + n), o < kw ? xrow[n] + o : xrow[n],
                         o < kw);
  }
}

__device__ __forceinline__ void multiply_ring(int (&acc)[TILES][NT][4], const W4* mine, int stage, const bool (&xin)[NT]) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    const W4* at = mine + (stage * SLOTS + u * (2 * TILES + NT)) * 32 * WARPS;
    W4 w[TILES][2], x[NT];
#pragma unroll
    for (int r = 0; r < TILES; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) w[r][h] = at[(2 * r + h) * 32 * WARPS];
#pragma unroll
    for (int n = 0; n < NT; ++n) x[n] = xin[n] ? at[(2 * TILES + n) * 32 * WARPS] : W4{0, 0, 0, 0};
    multiply_step(acc, w, x);
  }
}
#else
__device__ __forceinline__ void multiply(int (&acc)[TILES][NT][4], const Tile& s) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    W4 w[TILES][2], x[NT];
#pragma unroll
    for (int r = 0; r < TILES; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) w[r][h] = s.w[r][h][u];
#pragma unroll
    for (int n = 0; n < NT; ++n) x[n] = s.x[n][u];
    multiply_step(acc, w, x);
  }
}
#endif

#if CLUSTER > 1
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ int load_peer(const int* p, u32 rank) {  // the same shared variable in CTA `rank`
  u32 local = static_cast<u32>(__cvta_generic_to_shared(p)), remote;
  int v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
  asm volatile("ld.shared::cluster.u32 %0, [%1];" : "=r"(v) : "r"(remote) : "memory");
  return v;
}
#endif

extern "C" __global__ void __launch_bounds__(32 * WARPS)
w4a4_mma(const u32* __restrict__ a, const void* __restrict__ sa, const u32* __restrict__ b,
         const void* __restrict__ sb, const void* __restrict__ bias, void* __restrict__ out, int M, int N,
         int kw, long long stride_a, long long stride_b, long long stride_c) {
  // a: (M, kw) words of packed activation codes; b: (N, kw) words of packed weights; kw % 4 == 0 and
  // both 16-byte aligned (the caller checks). out: (M, N), row stride stride_c elements. The CLUSTER
  // CTAs of a cluster share a row tile and split its K further; the first adds the others' sums.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
#if CLUSTER > 1
  u32 rank;
  asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
#else
  const u32 rank = 0;
#endif
  const int n0 = blockIdx.x / CLUSTER * 16 * TILES;
  const int step = 16 * UNROLL * WARPS * CLUSTER;
  const int c0 = 16 * UNROLL * (static_cast<int>(rank) * WARPS + warp) + 4 * t;

  const u32* wrow[TILES][2];
#pragma unroll
  for (int r = 0; r < TILES; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = min(n0 + 16 * r + 8 * h + g, N - 1);  // rows past N load row N-1; never stored
      wrow[r][h] = b + static_cast<long long>(n) * stride_b;
    }
  const u32* xrow[NT];
  bool xin[NT];
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    xin[n] = 8 * n + g < M;
    xrow[n] = a + static_cast<long long>(xin[n] ? 8 * n + g : 0) * stride_a;
  }

  int acc[TILES][NT][4];
  clear(acc);

  // a ring of STAGES steps' words: STAGES - 1 steps in flight while one is multiplied
#if ASYNC
  extern __shared__ W4 ring[];
  const u32 base = static_cast<u32>(__cvta_generic_to_shared(ring + threadIdx.x));
#pragma unroll
  for (int s = 0; s + 1 < STAGES; ++s) issue_weights(base, s, wrow, c0 + s * step, kw);
#else
  Tile buf[STAGES];
#pragma unroll
  for (int s = 0; s + 1 < STAGES; ++s) load_weights(buf[s], wrow, c0 + s * step, kw);
#endif
  Out outs[EARLY_OUTS ? OUTS : 1];
  place_early(outs, n0, N, sb, bias);
  wait_then_release();  // the codes and scales come from the previous kernel
  if constexpr (EARLY_OUTS) {
#pragma unroll
    for (int j = 0; j < OUTS; ++j) load_scale(outs[j], M, sa);
  }
#pragma unroll
  for (int s = 0; s + 1 < STAGES; ++s) {
#if ASYNC
    issue_inputs(base, s, xrow, xin, c0 + s * step, kw);
    asm volatile("cp.async.commit_group;" ::: "memory");  // group s: step s (and, in the first, the weights)
#else
    load_inputs(buf[s], xrow, xin, c0 + s * step, kw);
#endif
  }

  for (int c = c0; c - 4 * t < kw;) {  // the same trip count for the whole warp (mma.sync needs it)
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      const int ahead = c + (STAGES - 1) * step;
#if ASYNC
      issue_weights(base, (s + STAGES - 1) % STAGES, wrow, ahead, kw);
      issue_inputs(base, (s + STAGES - 1) % STAGES, xrow, xin, ahead, kw);
      asm volatile("cp.async.commit_group;" ::: "memory");
      asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 1) : "memory");  // this step's group has landed
      multiply_ring(acc, ring + threadIdx.x, s, xin);
#else
      load_weights(buf[(s + STAGES - 1) % STAGES], wrow, ahead, kw);
      load_inputs(buf[(s + STAGES - 1) % STAGES], xrow, xin, ahead, kw);
      multiply(acc, buf[s]);
#endif
      c += step;
      if (c - 4 * t >= kw) break;
    }
  }

  auto output = [&](int j) {  // output j of this thread, its epilogue operands loaded by now
    if constexpr (EARLY_OUTS) return outs[j];
    Out o = place(out_v(j), out_l(j), n0, N, sb, bias);
    load_scale(o, M, sa);
    return o;
  };
#if WARPS > 1 || CLUSTER > 1
  __shared__ int part[WARPS][PER_LANE][32];
  stash(part, acc, warp, lane);
#if CLUSTER > 1
  __shared__ int red[PER_LANE][32];
  for (int e = threadIdx.x; e < PER_LANE * 32; e += 32 * WARPS) red[e >> 5][e & 31] = warp_sum(part, e >> 5, e & 31);
  cluster_sync();  // every CTA's sums are in its shared memory
  if (rank == 0)
#pragma unroll
    for (int j = 0; j < OUTS; ++j) {
      const int v = out_v(j), l = out_l(j);
      if (v >= PER_LANE) break;
      int sum = red[v][l];
      for (u32 p = 1; p < CLUSTER; ++p) sum += load_peer(&red[v][l], p);
      finish(output(j), sum >> 8, M, N, out, stride_c);
    }
  cluster_sync();  // the peers' shared memory stays until the first CTA has read it
#else
#pragma unroll
  for (int j = 0; j < OUTS; ++j) {
    const int v = out_v(j), l = out_l(j);
    if (v >= PER_LANE) break;
    finish(output(j), warp_sum(part, v, l) >> 8, M, N, out, stride_c);
  }
#endif
#else
#pragma unroll
  for (int j = 0; j < PER_LANE; ++j)
    finish(output(j), acc[j / (NT * 4)][(j >> 2) % NT][j & 3] >> 8, M, N, out, stride_c);
#endif
}
