"""Code execution in per-room Jupyter kernels (the kernels issue builds it)."""
