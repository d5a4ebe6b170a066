// What the NVRTC-compiled W4A4 GEMMs (w4a4_mma.cu, w4a4_planes.cu, w4a4_wgmma.cu) share: reading a scale
// or bias of any of the three dtypes as float, and rounding an output to OUT_T. NVRTC gets this header in
// memory (mma_gemv._compile passes every csrc/*.cuh); it needs no other header.
//
// Dtype codes, for SA_T, SB_T, BIAS_T and OUT_T: 0 float16, 1 bfloat16, 2 float32.
#pragma once

typedef unsigned int u32;

// Element i of a float16, bfloat16 or float32 array (type 0, 1, 2), exactly, as float.
__device__ __forceinline__ float to_f32(const void* p, long long i, int type) {
  if (type == 2) return static_cast<const float*>(p)[i];
  unsigned short h = static_cast<const unsigned short*>(p)[i];
  if (type == 1) return __uint_as_float(static_cast<u32>(h) << 16);
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

// An output's bits in OUT_T, rounded to nearest even.
#if OUT_T == 2
typedef float OutBits;
__device__ __forceinline__ float out_bits(float y) { return y; }
#else
typedef unsigned short OutBits;
__device__ __forceinline__ unsigned short out_bits(float y) {
  unsigned short h;
#if OUT_T == 1
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(y));
#else
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(y));
#endif
  return h;
}
#endif
