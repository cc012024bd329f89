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
  char model[64];   // CPUID's brand string, trimmed ("" where there is none)
  char vendor[16];  // CPUID's vendor ("GenuineIntel", "AuthenticAMD"; "" off x86)
};

const Hardware &hardware();

const char *isa_name(Isa isa);  // "generic", "avx2", "avx512"
const char *isa_name();         // isa_name(hardware().isa)

}  // namespace fc
