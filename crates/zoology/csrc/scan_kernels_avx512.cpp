// The fused scan kernels built for one instruction set (flags: build/link_torch_cuda.rs).
#define ZS_NS zs_avx512
#define ZS_LANES 16
#include "scan_kernels.h"
const int64_t zs_avx512::lanes = ZS_LANES;
