// The fused scan kernels built for one instruction set (flags: build/link_torch_cuda.rs).
#define ZS_NS zs_generic
#define ZS_LANES 16
#include "scan_kernels.h"
const int64_t zs_generic::lanes = ZS_LANES;
