"""The machine a run uses: devices (CUDA GPUs and CPU slots), worker isolation, and the thin
CUDA layer. CUDA-specific code lives in :mod:`gpubench.machine.cuda` alone."""
