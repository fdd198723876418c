"""The local provider (`mlx://` or `local://` URIs): models on this machine, loaded by mlx-lm and
run by the numpy or the MLX backend (imported only when such a URI is used).

Importing this package first loads OpenBLAS on Linux (see `blas`), so that every module below it
that imports `mlx.core` gets the fast BLAS.
"""

from runtime.providers.local import blas

blas.prepare()
