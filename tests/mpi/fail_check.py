"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: rank 1 raises in the middle of a
training step while rank 0 goes on into the gradient allreduce. The job must end (non-zero)
within seconds, not hang."""

import numpy as np

import fastconv
import fastconv.distributed as dist
from fastconv import nn

dist.init()
model = dist.DistributedDataParallel(nn.Linear(8, 4, dtype=np.float64))
x = fastconv.Tensor(np.ones((2, 8)))
loss = model(x).sum()
if dist.rank() == 1:
    raise RuntimeError("injected failure on rank 1")
loss.backward()  # rank 0 waits in the allreduce for a rank that will never come
print("rank 0 should not get here", flush=True)
