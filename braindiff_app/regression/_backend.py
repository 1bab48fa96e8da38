"""The backend seam: the few array operations ridge needs, on numpy (CPU) or torch (CPU or GPU).

Ridge code calls only these methods and the ``@``, ``+``, ``*`` operators shared by numpy arrays and torch
tensors, so the same algorithm runs on either. Results always come back to the caller as numpy via
:meth:`to_numpy`. The caller chooses the device (see :func:`braindiff_app.config.resolve_device`); nothing here
picks one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from braindiff_app.config import check_in_allowed

__all__ = ["BACKENDS", "get_backend"]


class NumpyBackend:
    """numpy + scipy on the CPU."""

    name = "numpy"

    def asarray(self, a: Any, dtype: str = "float32") -> np.ndarray:
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def transpose(self, a: np.ndarray) -> np.ndarray:
        return a.T

    def inv_spd(self, a: np.ndarray) -> np.ndarray:
        """Inverse of a symmetric positive definite matrix, from its Cholesky factor (LAPACK potrf + potri)."""
        from scipy.linalg.lapack import get_lapack_funcs

        potrf, potri = get_lapack_funcs(("potrf", "potri"), (a,))
        factor, info = potrf(a, lower=True, overwrite_a=True, clean=True)
        if info > 0:
            raise ValueError(f"the regularized Gram matrix is not positive definite (leading minor {info}); "
                             "increase alpha.")
        inverse, _ = potri(factor, lower=True, overwrite_c=True)
        return np.tril(inverse) + np.tril(inverse, -1).T

    def eigh(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.linalg.eigh(a)

    def add_diagonal(self, a: np.ndarray, value: float) -> np.ndarray:
        a[np.diag_indices_from(a)] += value
        return a

    def take_columns(self, a: np.ndarray, index: np.ndarray) -> np.ndarray:
        return a[:, index]

    def free(self) -> None:
        return None


class TorchBackend:
    """torch on a given device (CPU or CUDA); float64 factorizations, float32 products."""

    name = "torch"

    def __init__(self, device: Any = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def asarray(self, a: Any, dtype: str = "float32"):
        torch = self.torch
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=getattr(torch, dtype))
        return torch.as_tensor(np.ascontiguousarray(a, dtype=dtype), device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy() if isinstance(a, self.torch.Tensor) else np.asarray(a)

    def transpose(self, a):
        return a.T

    def inv_spd(self, a):
        torch = self.torch
        return torch.cholesky_inverse(torch.linalg.cholesky(a))

    def eigh(self, a):
        return self.torch.linalg.eigh(a)

    def add_diagonal(self, a, value: float):
        a.diagonal().add_(value)
        return a

    def take_columns(self, a, index):
        return a[:, self.torch.as_tensor(np.asarray(index), device=a.device)]

    def free(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


BACKENDS = {"numpy": NumpyBackend, "torch": TorchBackend}


def get_backend(name: str = "numpy", device: Any = None):
    """Return a backend by name.

    Parameters
    ----------
    name : str in {"numpy", "torch"}, default "numpy"
        - ``"numpy"``: numpy/scipy on the CPU (``device`` must be None or "cpu").
        - ``"torch"``: torch on ``device`` (default "cpu"); pass ``"cuda"`` for a GPU.
    device : str or torch.device, optional
        Where the torch backend computes.
    """
    check_in_allowed(name, BACKENDS, "backend")
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"device: the numpy backend runs on the CPU only, got {device!r}; "
                             "use backend='torch' for a GPU.")
        return NumpyBackend()
    try:
        return TorchBackend("cpu" if device is None else device)
    except ImportError:
        raise ImportError("backend='torch' needs PyTorch: pip install torch") from None
