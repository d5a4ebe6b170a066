// W4A4 GEMM for few rows (M <= 16) on INT8 tensor cores, reading the activations as the quantizer's MMA
// planes instead of packed codes: out^T (N x M) = W (N x K) . X^T (K x M).
//
// The MMA is mapped as in w4a4_mma.cu (its header says how; w4a4_gemv.cuh holds what the two share): thread
// (g = lane / 4, t = lane % 4) feeds its own 16-byte words of weight rows g and g + 8 to mma.m16n8k32, MMA
// k = 4 t + i <-> the even column of byte i of a weight word, k = 16 + 4 t + i <-> its odd column. What
// differs is the unpacking, one LOP3 per register:
//   weights, even columns: (w & 0x0F0F0F0F) ^ 0x08080808 = code + 8, in 0..15 (an s8 all the same)
//   weights, odd columns:   w & 0xF0F0F0F0               = 16 x code
// and the activations arrive unpacked, from the quantizer (triton_kernels.sym_quant_into with xsum): for
// every 8 columns (one 32-bit word of packed codes), 4 bytes of 16 x the even columns' codes, then 4 bytes
// of the odd columns' codes, so the two 16-byte words that match a thread's 16-byte weight word hold, for
// each of its 32-bit words j, the MMA's two B registers side by side. Every product then carries a factor 16: the int32 accumulator holds 16 x (the dot product + 8 x the
// sum of the row's even-column activation codes), which the quantizer also writes (xsum); the epilogue
// takes it off. A row of planes is padded with zeros to whole chunks of 128 columns (the quantizer writes
// them), so the activation loads need no guards; rows past M read row M - 1 (their outputs are not stored).
//
// K is read in chunks of 16 32-bit words of packed weights (128 columns): chunk c is words 16 c + 4 t ..
// + 3 of thread t. Warp w of the block's WARPS takes chunks w, w + WARPS, ...; RING - 1 chunks are in
// flight while one is multiplied, with no guard and no address computed but a pointer increment. A last
// partial chunk (K % 128 != 0) is multiplied after the loop, with the weight loads guarded. One block
// covers 16 TILES weight rows (under BALANCE, at most that many). With PDL the block requests its first
// weights, and its outputs' weight scales and bias, before it waits for the quantizer.
//
// XSUM 0 (planes without the sum, the quantizer's layout 3): the activations' even plane holds the codes
// themselves, and the even weight columns go in as 16 x code too ((w << 4) & 0xF0F0F0F0, two instructions
// where XSUM 1 takes one): the accumulator holds 16 x the dot product, with no sum to take off, so the
// quantizer need not add up its row's codes (a block-wide reduction, on the chain's critical path).
//
// Configuration macros: WARPS, TILES, RING (chunks in the register ring: RING - 1 in flight), NT (8-row
// activation tiles: 1 or 2), XSUM (1: the even plane is 16 x code and the weights' even columns code + 8,
// corrected by the row sums; 0: see above), SA_T, SB_T, BIAS_T, OUT_T (0 float16, 1 bfloat16, 2 float32), HAS_BIAS, PDL,
// PREFETCH (sm_90: the block's weight rows prefetched into L2 with cp.async.bulk before the PDL wait; with
// HEAD < 100 only the first HEAD % of each row before it, the rest once the first planes are requested),
// EARLY (1: the first RING - 1 chunks' weights requested before the PDL wait; 0, for benchmarks: after it),
// TIMELINE (0, or the number of blocks whose timestamps are kept in w4a4_timeline).
// BALANCE (0: block b covers the 16 TILES rows from 16 TILES b; 1: the N rows shared out over G = gridDim.x
// blocks, N / G each and one more for the first N % G, at most 16 TILES, so that a grid of as many blocks as fit the GPU at once
// gives every SM the same share of the weights instead of a third block on some SMs and two on the rest;
// the lanes of rows past the block's end load its last row, which a lane of the same load, or of the one
// just before, asks for too, and their outputs are not stored).

#define CLUSTER 1
#ifndef BALANCE
#define BALANCE 0
#endif
#ifndef HEAD
#define HEAD 100
#endif
#include "w4a4_gemv.cuh"  // W4, the loads, mma, the epilogue

struct Chunk {  // one chunk's words of a thread: weight rows g, g + 8 of each tile; each activation tile's planes
  W4 w[TILES][2];
  W4 x[NT][2];
};

// the even columns' codes + 8 (the odd ones: odd16, 16 x code), one LOP3: low = 0x0F0F0F0F held in a register (a LOP3 takes one constant)
__device__ __forceinline__ u32 even8(u32 w, u32 low) { return (w & low) ^ 0x08080808u; }

__device__ __forceinline__ void multiply(int (&acc)[TILES][NT][4], const Chunk& s, u32 low) {
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int r = 0; r < TILES; ++r) {
      const u32 lo = word(s.w[r][0], j), hi = word(s.w[r][1], j);
      const u32 a2 = odd16(lo), a3 = odd16(hi);
      const u32 a0 = XSUM ? even8(lo, low) : even16(lo), a1 = XSUM ? even8(hi, low) : even16(hi);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const W4& x = s.x[n][j >> 1];  // word j's two planes side by side, as the MMA takes them
        mma(acc[r][n], a0, a1, a2, a3, j & 1 ? x.z : x.x, j & 1 ? x.w : x.y);
      }
    }
}

// Pointers to the words of the next chunk a thread loads, advanced after each load (cheaper than an address
// made from an offset: the compiler then makes again what it can, the row indices included, in the loop).
struct Cursor {
  const u32* w[TILES][2];
  const u32* x[NT];
};

__device__ __forceinline__ void load_weights(Chunk& s, Cursor& p) {
#pragma unroll
  for (int r = 0; r < TILES; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      s.w[r][h] = ld_stream(p.w[r][h]);
      p.w[r][h] += 16 * WARPS;
    }
}

__device__ __forceinline__ void load_inputs(Chunk& s, Cursor& p) {
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    s.x[n][0] = ld_shared_input(p.x[n]);
    s.x[n][1] = ld_shared_input(p.x[n] + 4);
    p.x[n] += 32 * WARPS;
  }
}

__device__ __forceinline__ void load_scales(Out& o, int M, const void* sa, const int* xsum) {
  if (o.row < M) {
    o.sa = to_f32(sa, o.row, SA_T);
    if (XSUM) o.xs = xsum[o.row];
  }
}

// The exact dot product from an accumulator sum: 16 x (dot + 8 x the even activation codes' sum), or
// without XSUM 16 x dot.
__device__ __forceinline__ int exact(int sum, const Out& o) { return XSUM ? (sum >> 4) - 8 * o.xs : sum >> 4; }

#if TIMELINE
// For benchmarks/chain_timeline.py: per block of the latest launch, %globaltimer (ns) when its first thread
// started, when that thread's PDL wait returned, when the block finished, and its SM.
__device__ unsigned long long w4a4_timeline[TIMELINE][4];

__device__ __forceinline__ unsigned long long now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
#endif

extern "C" __global__ void __launch_bounds__(32 * WARPS)
w4a4_planes(const u32* __restrict__ xp, const int* __restrict__ xsum, const void* __restrict__ sa,
            const u32* __restrict__ b, const void* __restrict__ sb, const void* __restrict__ bias,
            void* __restrict__ out, int M, int N, int kw, long long stride_x, long long stride_b,
            long long stride_c) {
  // xp: (M, stride_x) words of activation planes (2 words per packed word, padded to whole chunks); xsum:
  // (M,) sums of the even columns' codes (XSUM 1; not read otherwise); b: (N, kw) words of packed weights, kw % 4 == 0, 16-byte aligned
  // (the caller checks). out: (M, N), row stride stride_c elements.
#if TIMELINE
  const unsigned long long started = now();
#endif
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
#if BALANCE
  const unsigned share = static_cast<unsigned>(N) / gridDim.x, over = static_cast<unsigned>(N) % gridDim.x;
  const int n0 = static_cast<int>(blockIdx.x * share + min(blockIdx.x, over));  // the first `over` blocks: a row more
  const int end = n0 + static_cast<int>(share + (blockIdx.x < over ? 1u : 0u));  // past our last row
  if (end <= n0) return;  // no row (the launch gives every block one; a grid past N must not fault)
#else
  const int n0 = blockIdx.x * 16 * TILES;
  const int end = N;  // only the last block has rows past it
#endif
  const int whole = kw >> 4;                                        // whole chunks of K
  const int mine = whole > warp ? (whole - 1 - warp) / WARPS + 1 : 0;  // this warp's: warp, warp + WARPS, ...
  const int first = 16 * warp + 4 * t;                               // its thread's word in the first
  // 0x0F0F0F0F, but not to the compiler, which would otherwise make it again for every LOP3 (M > 0)
  const u32 low = 0x0F0F0F0Fu + static_cast<u32>(min(M, 1) - 1);

  Cursor p;
#pragma unroll
  for (int r = 0; r < TILES; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = min(n0 + 16 * r + 8 * h + g, end - 1);  // rows past the end load the last; never stored
      p.w[r][h] = b + static_cast<long long>(n) * stride_b + first;
    }
#pragma unroll
  for (int n = 0; n < NT; ++n) p.x[n] = xp + static_cast<long long>(min(8 * n + g, M - 1)) * stride_x + 2 * first;

  int acc[TILES][NT][4];
  clear(acc);

#if PREFETCH
  // the block's weight rows on their way to L2 while the quantizer runs, one bulk prefetch per row: whole,
  // or with HEAD < 100 the first HEAD % of each (whole 16 bytes) before the wait and the rest once the block
  // has asked for its first planes (so that those reads do not queue behind it)
  const bool prefetcher = threadIdx.x < 16 * TILES && n0 + static_cast<int>(threadIdx.x) < end;
  const char* prefetch_row = reinterpret_cast<const char*>(b + static_cast<long long>(n0 + threadIdx.x) * stride_b);
  const u32 head = HEAD >= 100 ? 4u * kw : (4u * kw * HEAD / 100) & ~15u;
  if (prefetcher && (HEAD >= 100 || head))
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(prefetch_row), "r"(head) : "memory");
#endif
  Chunk ring[RING];
  auto first_weights = [&] {  // the first RING - 1 chunks' weights, before the wait unless EARLY is 0
#pragma unroll
    for (int s = 0; s + 1 < RING; ++s)
      if (s < mine) load_weights(ring[s], p);
  };
  if (EARLY) first_weights();
  Out outs[EARLY_OUTS ? OUTS : 1];
  place_early(outs, n0, end, sb, bias);
  wait_then_release();  // the planes, sums and scales come from the quantizer
#if TIMELINE
  const unsigned long long released = now();
#endif
  if (!EARLY) first_weights();  // benchmarks only: as without PDL
  if constexpr (EARLY_OUTS) {
#pragma unroll
    for (int j = 0; j < OUTS; ++j) load_scales(outs[j], M, sa, xsum);
  }
#pragma unroll
  for (int s = 0; s + 1 < RING; ++s)
    if (s < mine) load_inputs(ring[s], p);
#if PREFETCH && HEAD < 100
  if (prefetcher && head < 4u * kw)
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(prefetch_row + head), "r"(4u * kw - head) : "memory");
#endif

  int s0 = 0;  // the loops' trip counts are the same for the whole warp (mma.sync needs it)
  for (; s0 + 2 * RING - 2 < mine; s0 += RING) {  // every chunk a trip loads lies in the warp's share: no test
#pragma unroll
    for (int r = 0; r < RING; ++r) {
      load_weights(ring[(r + RING - 1) % RING], p);
      load_inputs(ring[(r + RING - 1) % RING], p);
      multiply(acc, ring[r], low);
    }
  }
  for (; s0 < mine; s0 += RING) {  // the last trips: what lies past the warp's share is neither loaded nor used
#pragma unroll
    for (int r = 0; r < RING; ++r) {
      if (s0 + r >= mine) break;
      if (s0 + r + RING - 1 < mine) {
        load_weights(ring[(r + RING - 1) % RING], p);
        load_inputs(ring[(r + RING - 1) % RING], p);
      }
      multiply(acc, ring[r], low);
    }
  }
  if ((kw & 15) && warp == whole % WARPS) {  // the last, partial chunk, where p now points (mine * WARPS +
    Chunk s;                                  // warp = whole): this thread's word may lie past K
#pragma unroll
    for (int r = 0; r < TILES; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) s.w[r][h] = 16 * whole + 4 * t < kw ? ld_stream(p.w[r][h]) : W4{0, 0, 0, 0};
    load_inputs(s, p);  // the planes are padded with zeros to whole chunks
    multiply(acc, s, low);
  }

  auto output = [&](int j) {  // output j of this thread, its epilogue operands loaded by now
    if constexpr (EARLY_OUTS) return outs[j];
    Out o = place(out_v(j), out_l(j), n0, end, sb, bias);
    load_scales(o, M, sa, xsum);
    return o;
  };
#if WARPS > 1
  __shared__ int part[WARPS][PER_LANE][32];
  stash(part, acc, warp, lane);
#pragma unroll
  for (int j = 0; j < OUTS; ++j) {
    const int v = out_v(j), l = out_l(j);
    if (v >= PER_LANE) break;
    const Out o = output(j);
    finish(o, exact(warp_sum(part, v, l), o), M, end, out, stride_c);
  }
#else
#pragma unroll
  for (int j = 0; j < PER_LANE; ++j) {
    const Out o = output(j);
    finish(o, exact(acc[j / (NT * 4)][(j >> 2) % NT][j & 3], o), M, end, out, stride_c);
  }
#endif
#if TIMELINE
  __syncthreads();
  if (threadIdx.x == 0 && blockIdx.x < TIMELINE) {
    u32 sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    unsigned long long* row = w4a4_timeline[blockIdx.x];
    row[0] = started, row[1] = released, row[2] = now(), row[3] = sm;
  }
#endif
}
