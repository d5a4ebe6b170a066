// The many-row W4A4 GEMM in CUDA C++ for Hopper (sm_90a): out^T (N x M) = W (N x K) . X^T (K x M) on
// INT8 tensor cores, from packed INT4 weights and the quantizer's INT8 activation planes (16 x the even
// and the odd columns' codes); what quant_linear runs beyond one round of tiles on sm_90. It does what
// the Gluon GEMM (graphsafe/quant/gluon_ws.py) cannot express in Triton 3.6, and is bit-equal to it:
//   - each K step runs as two groups of wgmmas, one per 32-byte K chunk, each on its own register set of
//     unpacked weights, untouched until the wait that ends its group; a group waits only for the one
//     before it, so each chunk's weights are unpacked while the previous chunk's wgmmas run;
//   - no barrier per step: each consumer warp releases a stage by its own mbarrier arrival (Triton puts
//     a warpgroup bar.sync before every mbarrier wait and arrival).
//
// Compiled at first use by NVRTC (graphsafe/quant/wgmma_gemm.py). One CTA: warpgroup 0 loads (one
// thread issues every TMA copy into a ring of STAGES stages), CONSUMERS warpgroups multiply and store.
// With one consumer two CTAs per SM walk 128 x 128 tiles persistently; with two, one CTA per SM walks
// 256 x 128 tiles, each consumer on 128 weight rows and both on the same activation tiles (a third less
// shared-memory fill per product). Tiles go in groups of GROUP_N weight tiles. The epilogue stages each
// 64 weight rows of outputs in shared memory (stmatrix for 16-bit outputs) and writes 16-byte vectors.
// With PDL (launched early after the quantizer) the loader fetches its first tile's first stages of
// weights before waiting for the quantizer's planes and scales; it never triggers its own dependents.
//
// Shared memory per stage: the weights' tile (128 rows per consumer x 64 packed bytes = 128 codes of K
// per row) and both activation planes' tiles (128 rows x 64 bytes each), written by TMA with the 64-byte swizzle
// (16-byte chunk c of row r lands at chunk c ^ ((r >> 1) & 3)). The planes are the wgmmas' second
// operand straight from there (K-major, 64-byte swizzle); each consumer thread reads its weight words
// (the first operand's register fragment: rows g and g + 8 of its warp's 16, bytes 4t..4t+3 and
// 16+4t..16+4t+3 of each 32-byte K chunk) and unpacks each 32-bit word into 16 x its even-column codes
// (shl 4, and) for the even plane and 16 x its odd-column codes (and) for the odd plane.
//
// Macros: STAGES, GROUP_N, SA_T, SB_T, BIAS_T, OUT_T (0 float16, 1 bfloat16, 2 float32), HAS_BIAS, PDL,
// CONSUMERS (1 or 2), LDSM (read the weights with ldmatrix), ABLATE (timing only, wrong outputs: 1
// issues no wgmma, 2 loads nothing). Its one header, w4a4_common.cuh, NVRTC gets in memory.

#include "w4a4_common.cuh"  // u32, to_f32, OutBits, out_bits

typedef unsigned long long u64;

struct __align__(64) TensorMap { u64 opaque[16]; };  // CUtensorMap, passed by value

#ifndef CONSUMERS
#define CONSUMERS 1
#endif
// weight rows (128 per consumer warpgroup), activation rows, packed bytes of K per step
constexpr int BN = 128 * CONSUMERS, BM = 128, BKB = 64;
constexpr int TILE_BYTES = 128 * 64;  // one plane's tile (and one consumer's weights)
constexpr int W_BYTES = CONSUMERS * TILE_BYTES;
constexpr int STAGE_BYTES = W_BYTES + 2 * TILE_BYTES;  // weights, even plane, odd plane

__device__ __forceinline__ u32 smem_addr(const void* p) {
  return static_cast<u32>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void bar_init(u64* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count));
}

__device__ __forceinline__ void bar_expect(u64* bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void bar_arrive(u64* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}

__device__ __forceinline__ void bar_wait(u64* bar, int parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}

__device__ __forceinline__ void tma_load(void* dst, const TensorMap* map, int x, int y, u64* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      ::"r"(smem_addr(dst)), "l"(reinterpret_cast<u64>(map)), "r"(x), "r"(y), "r"(smem_addr(bar))
      : "memory");
}

__device__ __forceinline__ void fence_operand(u32& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void fence_operand(int& r) { asm volatile("" : "+r"(r)::"memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// Shared-memory matrix descriptor of a K-major 64-byte-swizzled tile: start address, leading byte offset
// 16 (unused with this swizzle), stride byte offset 512 (8 rows of 64 bytes), swizzle mode 2 (64 bytes).
__device__ __forceinline__ u64 descriptor(u32 addr) {
  return static_cast<u64>((addr & 0x3FFFF) >> 4) | (1ull << 16) | (32ull << 32) | (2ull << 62);
}

__device__ __forceinline__ void wgmma_s8(int (&d)[64], u32 a0, u32 a1, u32 a2, u32 a3, u64 desc, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale_d));
}

// The same on 64 activation rows (a piece of the last round): the first 32 of the 64 accumulators.
__device__ __forceinline__ void wgmma_s8_n64(int (&d)[64], u32 a0, u32 a1, u32 a2, u32 a3, u64 desc, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale_d));
}

// Consumer warpgroup c's named barrier (1 or 2) for its epilogue; immediate ids, so ptxas counts two.
__device__ __forceinline__ void epi_sync(int c) {
  if (c == 0) asm volatile("bar.sync 1, 128;" ::: "memory");
  else asm volatile("bar.sync 2, 128;" ::: "memory");
}

// One output before rounding: the sum (256 x the exact sum in acc) times the activation row's and the
// weight row's scales, plus the bias (0 without), in this order (the Gluon GEMM's, for equal bits).
__device__ __forceinline__ float epi_value(int acc, float sa, float sb, float bias) {
  float v = static_cast<float>(acc >> 8) * sa;
  v = v * sb;
#if HAS_BIAS
  v = v + bias;
#endif
  return v;
}

__device__ __forceinline__ u32 pack2(float lo, float hi) {  // two 16-bit outputs, the first in the low half
  u32 r;
#if OUT_T == 1
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
  return r;
}

// The epilogue's staging rows (64 values each) padded by 16 bytes: a warp's 2-byte or 4-byte writes
// (rows 2 t + const, columns g + const) fall in distinct banks, and rows stay 16-byte aligned.
constexpr int EPI_PITCH = (64 * sizeof(OutBits) + 16) / sizeof(OutBits);
constexpr int EPI_BYTES = 128 * EPI_PITCH * sizeof(OutBits);  // one consumer's staging buffer

// The program's tile t -> (weight tile, activation tile), GROUP_N weight tiles walking the activation
// tiles together (triton_kernels._grouped_tile).
__device__ __forceinline__ void grouped_tile(int t, int tiles_n, int tiles_m, int& pn, int& pm) {
  const int width = GROUP_N * tiles_m, first = (t / width) * GROUP_N, size = min(tiles_n - first, GROUP_N);
  pn = first + (t % width) % size;
  pm = (t % width) / size;
}

struct Half { u32 a[2][2][4]; };  // one 32-byte K chunk's fragments: [weight half h][plane][register]

// Where a consumer thread's weight words lie in a stage: its row's start, and for 16-byte chunk k of a
// row, the chunk after the swizzle, 16 (k ^ ((r >> 1) & 3)). Bits 1-2 of every row r the thread reads are
// fixed, so that is (16 k) ^ xt with xt fixed per thread (the XOR touches bits 4-5 only). Plain loads:
// rows 16 warp + g (+ 8), byte 4 t of the chunk, xt = 16 ((g >> 1) & 3) + 4 t. LDSM (ldmatrix .x4: a
// 64-row half's four fragments of a chunk at once): lane l gives row 16 warp + (l & 7) + 8 ((l >> 3) & 1)
// and chunk 2 c + (l >> 4), so xt = 16 (l >> 4) ^ 16 ((l >> 1) & 3).
struct Offsets { int row; int xt; };

__device__ __forceinline__ Offsets offsets(int warp, int lane) {
#if LDSM
  return Offsets{(16 * warp + (lane & 7) + 8 * ((lane >> 3) & 1)) * 64,
                 (16 * (lane >> 4)) ^ (16 * ((lane >> 1) & 3))};
#else
  const int g = lane / 4, t = lane % 4;
  return Offsets{(16 * warp + g) * 64, 16 * ((g >> 1) & 3) + 4 * t};
#endif
}

// The weight fragments of one 32-byte K chunk c of stage `w` (H x 64 rows of 64 swizzled bytes),
// unpacked: for each 64-row half h, rows 64 h + 16 warp + g and + 8, bytes 32 c + 4 t and 32 c + 16 + 4 t.
template <int H>
__device__ __forceinline__ void load_half(Half& f, const unsigned char* w, const Offsets& o, int c) {
#pragma unroll
  for (int h = 0; h < H; ++h) {
    u32 v[4];  // q: (row r0 or r0 + 8) + 2 (first or second 16 bytes of the chunk)
#if LDSM
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
                 : "r"(smem_addr(w + o.row + 64 * 64 * h + ((32 * c) ^ o.xt))));
#else
#pragma unroll
    for (int q = 0; q < 4; ++q)
      v[q] = *reinterpret_cast<const u32*>(w + o.row + (64 * h + 8 * (q & 1)) * 64 + ((32 * c + 16 * (q >> 1)) ^ o.xt));
#endif
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      f.a[h][0][q] = (v[q] << 4) & 0xF0F0F0F0u;
      f.a[h][1][q] = v[q] & 0xF0F0F0F0u;
    }
  }
}

__device__ __forceinline__ void fence_half(Half& f) {
#pragma unroll
  for (int i = 0; i < 16; ++i) fence_operand(f.a[i / 8][i / 4 % 2][i % 4]);
}

__device__ __forceinline__ void fence_acc(int (&acc)[2][64]) {
#pragma unroll
  for (int i = 0; i < 128; ++i) fence_operand(acc[i / 64][i % 64]);
}

// The wgmmas of one K chunk c, as one group: H weight halves, both planes (plane tiles at xl, xh), NB
// activation rows. `accumulate` 0 only for a tile's first chunk (its first wgmma of each half then
// overwrites the accumulators).
template <int H, int NB>
__device__ __forceinline__ void issue(int (&acc)[2][64], const Half& f, u32 xl, u32 xh, int c, int accumulate) {
  if (ABLATE == 1) return;
  wgmma_fence();
#pragma unroll
  for (int p = 0; p < 2; ++p) {
    const u64 desc = descriptor((p ? xh : xl) + 32 * c);
#pragma unroll
    for (int h = 0; h < H; ++h) {
      const u32(&a)[4] = f.a[h][p];
      if (NB == 128)
        wgmma_s8(acc[h], a[0], a[1], a[2], a[3], desc, accumulate | p);
      else
        wgmma_s8_n64(acc[h], a[0], a[1], a[2], a[3], desc, accumulate | p);
    }
  }
  wgmma_commit();
}

struct Consumer {  // a consumer thread's place and state across tiles
  const Offsets o;
  const int lane;
  const int c;  // which consumer warpgroup: its weights' offset in a stage (c x its rows x 64 bytes)
  unsigned char* smem;
  unsigned char* epi;  // the epilogue's staging buffer
  u64* full;
  u64* empty;
  int st, ph;  // the next step's stage and the parity of its use (steps consumed so far: st + STAGES x uses)

  __device__ __forceinline__ void advance() { if (++st == STAGES) st = 0, ph ^= 1; }
};

// Releases stage `st` for the producer's next TMA copies into it: this warp's generic reads of its
// weights are ordered before those async-proxy writes (as the Gluon GEMM does), then one arrival per warp.
__device__ __forceinline__ void release(const Consumer& k, int st) {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncwarp();
  if (k.lane == 0) bar_arrive(&k.empty[st]);
}

// One tile or piece (H x 64 weight rows from n0, NB activation rows from m0): every K step, then the
// epilogue. Each step is two groups of wgmmas, one per 32-byte K chunk, each on its own register set
// (lo: chunk 0, hi: chunk 1): a group waits only for the group before it, so each chunk's unpacking runs
// while the previous chunk's wgmmas do, and a set is fenced after the wait that ends its wgmmas, so the
// compiler cannot reuse its registers while they may still be read. A stage is released once both of
// its groups are done. acc[h][4 j + e] is weight row 64 h + 16 warp + g + 8 (e >> 1), activation row 8 j
// + 2 t + (e & 1); 256 x the exact sums.
template <int H, int NB>
__device__ __forceinline__ void consume(Consumer& k, int (&acc)[2][64], Half& lo, Half& hi, int steps, int n0,
                                        int m0, const void* sa, const void* sb, const void* bias, void* out, int M,
                                        int N, long long stride_c, int vec) {
  for (int s = 0; s < steps; ++s) {
    bar_wait(&k.full[k.st], k.ph);
    __syncwarp();  // the warp converged again after its polling loop, for the .aligned wgmma instructions
    const unsigned char* base = k.smem + k.st * STAGE_BYTES;
    const u32 xl = smem_addr(base + W_BYTES), xh = smem_addr(base + W_BYTES + TILE_BYTES);
    load_half<H>(lo, base + k.c * H * 64 * 64, k.o, 0);
    issue<H, NB>(acc, lo, xl, xh, 0, s > 0);
    if (s > 0) {  // the previous step's second group is done: its registers and its stage are free
      wgmma_wait<1>();
      fence_half(hi);
      release(k, k.st == 0 ? STAGES - 1 : k.st - 1);
    }
    load_half<H>(hi, base + k.c * H * 64 * 64, k.o, 1);
    issue<H, NB>(acc, hi, xl, xh, 1, 1);
    wgmma_wait<1>();  // this step's first group is done
    fence_half(lo);
    k.advance();
  }
  wgmma_wait<0>();
  fence_acc(acc);
  fence_half(hi);
  release(k, k.st == 0 ? STAGES - 1 : k.st - 1);

  const int tid = (threadIdx.x - 128) % 128, warp = tid / 32, g = k.lane / 4, t = k.lane % 4;  // recomputed
  n0 += k.c * 64 * H;  // this consumer's weight rows
  float sam[NB / 8][2];  // the activation scales of the thread's rows, loaded before any store
#pragma unroll
  for (int j = 0; j < NB / 8; ++j)
#pragma unroll
    for (int e1 = 0; e1 < 2; ++e1) {
      const int m = m0 + 2 * t + 8 * j + e1;
      sam[j][e1] = m < M ? to_f32(sa, m, SA_T) : 0.0f;
    }
  OutBits* e = reinterpret_cast<OutBits*>(k.epi);
#pragma unroll
  for (int h = 0; h < H; ++h) {
    float wsc[2], b[2] = {0.0f, 0.0f};
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int n = n0 + 64 * h + 16 * warp + g + 8 * e2;
      wsc[e2] = n < N ? to_f32(sb, n, SB_T) : 0.0f;
#if HAS_BIAS
      b[e2] = n < N ? to_f32(bias, n, BIAS_T) : 0.0f;
#endif
    }
#if OUT_T != 2
    // 16-bit outputs: stmatrix .trans writes four 8 x 8 blocks per instruction (j, j + 1 x both row
    // groups e2), each transposed so that a staging row holds 8 consecutive weight rows of one
    // activation row; lane 8 q + i gives block q's row i.
    const int lq = k.lane >> 3, li = k.lane & 7;
    const u32 rows = smem_addr(e) + ((8 * (lq >> 1) + li) * EPI_PITCH + 16 * warp + 8 * (lq & 1)) * 2;
#pragma unroll
    for (int jp = 0; jp < NB / 16; ++jp) {
      u32 r[4];
#pragma unroll
      for (int bq = 0; bq < 4; ++bq) {
        const int j = 2 * jp + (bq >> 1), e2 = bq & 1;
        const float v0 = epi_value(acc[h][4 * j + 2 * e2], sam[j][0], wsc[e2], b[e2]);
        const float v1 = epi_value(acc[h][4 * j + 2 * e2 + 1], sam[j][1], wsc[e2], b[e2]);
        r[bq] = pack2(v0, v1);
      }
      asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};"
                   ::"r"(rows + 16 * jp * EPI_PITCH * 2), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]) : "memory");
    }
#else
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
#pragma unroll
      for (int j = 0; j < NB / 8; ++j)
#pragma unroll
        for (int e1 = 0; e1 < 2; ++e1) {
          const float v = epi_value(acc[h][4 * j + 2 * e2 + e1], sam[j][e1], wsc[e2], b[e2]);
          e[(2 * t + 8 * j + e1) * EPI_PITCH + 16 * warp + g + 8 * e2] = out_bits(v);
        }
    }
#endif
    // The 64 weight rows x NB activation rows of this half, staged in shared memory (out's layout: a row
    // of 64 values per activation row), leave as 16-byte vectors: 64 / PER_VEC threads per row.
    epi_sync(k.c);
    constexpr int PER_VEC = 16 / sizeof(OutBits), VECS = 64 / PER_VEC;
    for (int i = tid; i < NB * VECS; i += 128) {
      const int r = i / VECS, v = i % VECS, m = m0 + r, n = n0 + 64 * h + v * PER_VEC;
      if (m >= M || n >= N) continue;
      const OutBits* src = e + r * EPI_PITCH + v * PER_VEC;
      OutBits* dst = static_cast<OutBits*>(out) + m * stride_c + n;
      if (vec && n + PER_VEC <= N) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      } else {
        for (int q = 0; q < PER_VEC && n + q < N; ++q) dst[q] = src[q];
      }
    }
    epi_sync(k.c);  // read before the next half overwrites it
  }
}

// The last round's piece `sub`: its tile's (sub % (pn pm))-th piece, pn along the weight rows first
// (gluon_ws._piece_origin). Returns (first weight row, first activation row).
__device__ __forceinline__ void piece_origin(int sub, int whole, int tiles_n, int tiles_m, int pn, int pm, int& n0,
                                             int& m0) {
  int tn, tm;
  grouped_tile(whole + sub / (pn * pm), tiles_n, tiles_m, tn, tm);
  const int piece = sub % (pn * pm);
  n0 = tn * BN + (piece % pn) * (BN / pn);
  m0 = tm * BM + (piece / pn) * (BM / pm);
}

// The producer: every step of a tile or piece into the next free stages; `bytes` its boxes' total.
__device__ __forceinline__ void produce(const TensorMap* w, const TensorMap* xl, const TensorMap* xh,
                                        unsigned char* smem, u64* full, u64* empty, int& it, int steps, int n0,
                                        int m0, int bytes, int s0 = 0) {
  for (int s = s0; s < steps; ++s, ++it) {
    const int st = it % STAGES;
    bar_wait(&empty[st], ((it / STAGES) & 1) ^ 1);
    unsigned char* base = smem + st * STAGE_BYTES;
    if (ABLATE == 2) { bar_arrive(&full[st]); continue; }
    bar_expect(&full[st], bytes);
    tma_load(base, w, s * BKB, n0, &full[st]);
    tma_load(base + W_BYTES, xl, s * BKB, m0, &full[st]);
    tma_load(base + W_BYTES + TILE_BYTES, xh, s * BKB, m0, &full[st]);
  }
}

// tw, txl, txh: boxes of whole tiles (128 rows x 64 bytes); tw_t, txl_t, txh_t: boxes of the last round's
// pieces (128 / pn weight rows, 128 / pm activation rows). The first tiles_n tiles_m - tail tiles run
// whole, then tail tiles in pn x pm pieces (triton_persist.plan).
extern "C" __global__ void __launch_bounds__(128 * (1 + CONSUMERS), 3 - CONSUMERS)
w4a4_wgmma(const __grid_constant__ TensorMap tw, const __grid_constant__ TensorMap txl,
           const __grid_constant__ TensorMap txh, const __grid_constant__ TensorMap tw_t,
           const __grid_constant__ TensorMap txl_t, const __grid_constant__ TensorMap txh_t, const void* sa,
           const void* sb, const void* bias, void* out, int M, int N, int KB, long long stride_c, int tail, int pn,
           int pm, int vec) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  // Aligned by an offset from smem_raw, not by rebuilding the pointer from an integer: the compiler then
  // still knows it points to shared memory and reads the weights with LDS, not generic loads.
  unsigned char* smem = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  u64* full = reinterpret_cast<u64*>(smem + STAGES * STAGE_BYTES);
  u64* empty = full + STAGES;
  const int tiles_n = (N + BN - 1) / BN, tiles_m = (M + BM - 1) / BM, whole = tiles_n * tiles_m - tail;
  const int pieces = tail * pn * pm;
  const int steps = (KB + BKB - 1) / BKB;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) bar_init(&full[s], 1), bar_init(&empty[s], 4 * CONSUMERS);  // 1 per warp
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (threadIdx.x < 128) {  // the load warpgroup: one thread issues the copies
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;");
    if (threadIdx.x != 0) return;
    int it = 0, first = 0;  // first: the first tile's steps already issued
#if PDL
    // Launched early after the quantizer: the first tile's first stages of weights (which do not depend on
    // it) are on their way before waiting for the quantizer's planes and scales.
    if (blockIdx.x < whole) {
      int tn, tm;
      grouped_tile(blockIdx.x, tiles_n, tiles_m, tn, tm);
      first = min(STAGES, steps);
      for (int s = 0; s < first; ++s) {
        bar_expect(&full[s], STAGE_BYTES);
        tma_load(smem + s * STAGE_BYTES, &tw, s * BKB, tn * BN, &full[s]);
      }
      asm volatile("griddepcontrol.wait;" ::: "memory");
      for (int s = 0; s < first; ++s) {
        tma_load(smem + s * STAGE_BYTES + W_BYTES, &txl, s * BKB, tm * BM, &full[s]);
        tma_load(smem + s * STAGE_BYTES + W_BYTES + TILE_BYTES, &txh, s * BKB, tm * BM, &full[s]);
      }
      it = first;
    } else {
      asm volatile("griddepcontrol.wait;" ::: "memory");
    }
#endif
    for (int tile = blockIdx.x; tile < whole; tile += gridDim.x) {
      int tn, tm;
      grouped_tile(tile, tiles_n, tiles_m, tn, tm);
      produce(&tw, &txl, &txh, smem, full, empty, it, steps, tn * BN, tm * BM, STAGE_BYTES,
              tile == blockIdx.x ? first : 0);
    }
    for (int sub = blockIdx.x; sub < pieces; sub += gridDim.x) {
      int n0, m0;
      piece_origin(sub, whole, tiles_n, tiles_m, pn, pm, n0, m0);
      produce(&tw_t, &txl_t, &txh_t, smem, full, empty, it, steps, n0, m0, (BN / pn + 2 * (BM / pm)) * BKB);
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(CONSUMERS == 2 ? 240 : 232));
#if PDL
  asm volatile("griddepcontrol.wait;" ::: "memory");  // the epilogue reads the quantizer's scales
#endif
  // consumer c multiplies weight rows [c BN / CONSUMERS, (c + 1) BN / CONSUMERS) of each tile or piece
  const int c = (threadIdx.x - 128) / 128, tid = (threadIdx.x - 128) % 128, warp = tid / 32, lane = tid % 32;
  Consumer k{offsets(warp, lane), lane, c, smem, smem + STAGES * STAGE_BYTES + 256 + c * EPI_BYTES,
             full, empty, 0, 0};
  int acc[2][64] = {};  // each tile's first wgmmas overwrite it (scale-d 0); zeroed once for the compiler
  Half lo, hi;
  for (int tile = blockIdx.x; tile < whole; tile += gridDim.x) {
    int tn, tm;
    grouped_tile(tile, tiles_n, tiles_m, tn, tm);
    consume<2, 128>(k, acc, lo, hi, steps, tn * BN, tm * BM, sa, sb, bias, out, M, N, stride_c, vec);
  }
  for (int sub = blockIdx.x; sub < pieces; sub += gridDim.x) {
    int n0, m0;
    piece_origin(sub, whole, tiles_n, tiles_m, pn, pm, n0, m0);
    if (pn == 2 && pm == 2)
      consume<1, 64>(k, acc, lo, hi, steps, n0, m0, sa, sb, bias, out, M, N, stride_c, vec);
    else if (pn == 2)
      consume<1, 128>(k, acc, lo, hi, steps, n0, m0, sa, sb, bias, out, M, N, stride_c, vec);
    else
      consume<2, 64>(k, acc, lo, hi, steps, n0, m0, sa, sb, bias, out, M, N, stride_c, vec);
  }
}
