"""The `mlx://` provider: local models through mlx-lm (imported only when an mlx:// URI is used).

Importing this package first loads OpenBLAS on Linux (see `blas`), so that every module below it
that imports `mlx.core` gets the fast BLAS.
"""

from runtime.providers.mlx import blas

blas.prepare()
