// One description of the machine, made once at load (the first call to hardware(), thread-safe):
// the instruction set every micro-kernel table uses, the cache sizes every blocking size derives
// from, the cores and the work items every partition aims at, and the CPU's name. Nothing else
// in csrc/ asks the CPU or the OS these facts.
#pragma once
#include <cstdint>

namespace fc {

// Ordered: a lower value runs on every CPU a higher one runs on.
enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

struct Hardware {
  Isa isa;          // the tables in use: best_isa, lowered by FASTCONV_ISA=generic|avx2|avx512
  Isa best_isa;     // the best set this CPU (and OS) supports
  int64_t l1d;      // bytes of L1 data cache, per core
  int64_t l2;       // bytes of L2, per core
  int64_t l3;       // bytes of L3 as the OS reports it: the whole chip's, or one CCX's on AMD
  int cores;        // logical CPUs this process may run on, at load
  int work_items;   // the work items a partition aims at (internal.h, fixed_items; hw.cpp)
  int tile_parts;   // the fewest tiles of a short weight gradient (hw.cpp, tile_parts)
  char model[64];   // CPUID's brand string, trimmed ("" where there is none)
  char vendor[16];  // CPUID's vendor ("GenuineIntel", "AuthenticAMD"; "" off x86)
  // 512-bit multiply-adds issue as often as 256-bit ones (two 512-bit FMA pipes: Intel's Xeon
  // Scalable Gold and Platinum, Zen 5), where Zen 4 runs each as two 256-bit halves and some
  // Xeons have one 512-bit pipe: twice the arithmetic per cycle, which moves the balance between
  // GEMM-like kernels and transforms (api.cpp, choose). Measured at load when the CPU has
  // AVX-512 (fma512_ratio: the 512-bit multiply-add rate in flops over the 256-bit one, best of
  // 5, about 2 or about 1; full from 1.5), FASTCONV_FULL_AVX512=0|1 overrides; false without it.
  bool full_avx512;
  double fma512_ratio;  // 0 where not measured (no AVX-512, or FASTCONV_FULL_AVX512 set)
};

// A CPU with full_avx512 running SIMD tables (AVX-512 or AVX2): some of auto's rules follow the
// core whichever table runs (api.cpp, measured with both on one such CPU).
bool full_avx512_core();
// The AVX-512 tables in use on a CPU with full_avx512.
bool wide_avx512();

const Hardware &hardware();

const char *isa_name(Isa isa);  // "generic", "avx2", "avx512"
const char *isa_name();         // isa_name(hardware().isa)

}  // namespace fc
