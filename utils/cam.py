"""Class activation maps of one layer: EigenCAM (gradient-free), Grad-CAM and Grad-CAM++.

* EigenCAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020,
  arXiv 2008.00299): the layer's activation ``A`` (C, H, W) is read as a matrix ``O`` of H·W rows
  (positions) and C columns (channels); with the SVD ``O = U Σ Vᵀ`` the map is the projection of ``O`` on the
  first right singular vector, ``O · v₁`` (= σ₁ u₁), one value per position. The paper factorises ``O``
  as it is, without centering; ``center=True`` subtracts the per-channel mean first (a PCA in the strict
  sense). The SVD fixes ``v₁`` only up to sign, so the sign is chosen to make the map correlate positively
  with the channel-mean activation; then ReLU and division by the maximum give a map in [0, 1].
* Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017, arXiv 1610.02391): channel weights ``α_c = mean_hw ∂score/∂A_c``,
  map = ReLU(Σ_c α_c A_c), divided by its maximum.
* Grad-CAM++ (Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
  Networks", WACV 2018, arXiv 1710.11063): channel weights ``w_k = Σ_ij α_ij^k · ReLU(∂Y/∂A_ij^k)`` with
  per-position coefficients ``α``. For the class score passed through an exponential, ``Y = exp(S)``, the
  paper's closed form needs only powers of the first gradient ``g = ∂S/∂A``:
  ``α_ij^k = g_ij² / (2·g_ij² + Σ_ab A_ab^k · g_ij³)`` (0 where the denominator is 0), and
  ``∂Y/∂A = exp(S)·g``. The factor ``exp(S) > 0`` is the same for every channel and position, so it only scales
  the map and is dropped by the normalisation: ``w_k = Σ_ij α_ij^k ReLU(g_ij^k)``,
  map = ReLU(Σ_k w_k A_k), divided by its maximum.

All take plain tensors; running the model and choosing the score is the caller's business.
"""

from __future__ import annotations

import torch


def _as_chw(a: torch.Tensor, name: str) -> torch.Tensor:
    if a.dim() == 4:
        if a.shape[0] != 1:
            raise ValueError(f"{name}: one image at a time, got batch {a.shape[0]}")
        a = a[0]
    if a.dim() != 3:
        raise ValueError(f"{name}: expected a (C, H, W) or (1, C, H, W) activation, got shape {tuple(a.shape)}")
    return a.detach().float()


def _relu_max_norm(m: torch.Tensor) -> torch.Tensor:
    m = m.clamp(min=0)
    mx = m.max()
    return m / mx if mx > 0 else torch.zeros_like(m)


def eigen_projection(activation: torch.Tensor, center: bool = False) -> torch.Tensor:
    """The signed projection ``O · v₁`` of EigenCAM, as an (H, W) map, before ReLU and normalisation.

    Args:
        activation: (C, H, W) or (1, C, H, W).
        center: subtract each channel's mean over positions before the SVD (not in the paper).
    """
    a = _as_chw(activation, "eigen_cam")
    c, h, w = a.shape
    o = a.reshape(c, h * w).T  # (C, H, W) -> (HW, C): one row per position
    if center:
        o = o - o.mean(0, keepdim=True)
    if not torch.isfinite(o).all() or not o.abs().sum():
        return torch.zeros(h, w)
    _, _, vh = torch.linalg.svd(o.double(), full_matrices=False)  # vh[0] = v₁ (C,)
    p = (o.double() @ vh[0]).float()  # (HW,)
    ref = a.mean(0).reshape(-1)  # channel-mean activation (HW,)
    corr = torch.dot(p - p.mean(), ref - ref.mean())
    if corr < 0 or (corr == 0 and p.sum() < 0):  # sign of v₁ is arbitrary: agree with the mean activation
        p = -p
    return p.reshape(h, w)  # (HW,) -> (H, W)


def eigen_cam(activation: torch.Tensor, center: bool = False) -> torch.Tensor:
    """EigenCAM map (H, W) in [0, 1] of an activation (C, H, W) or (1, C, H, W) (see the module docstring)."""
    return _relu_max_norm(eigen_projection(activation, center))


def grad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM map (H, W) in [0, 1] from an activation and the gradient of the score with respect to it.

    Args:
        activation: (C, H, W) or (1, C, H, W).
        gradient: same shape as ``activation``.
    """
    a, g = _as_chw(activation, "grad_cam"), _as_chw(gradient, "grad_cam")
    if a.shape != g.shape:
        raise ValueError(f"grad_cam: activation {tuple(a.shape)} and gradient {tuple(g.shape)} differ")
    alpha = g.mean((1, 2))  # (C,)
    return _relu_max_norm((alpha[:, None, None] * a).sum(0))  # (H, W)


def grad_cam_pp(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ map (H, W) in [0, 1] from an activation and the gradient of the (pre-exponential) score with
    respect to it, by the closed form of the module docstring (computed in float64).

    Args:
        activation: (C, H, W) or (1, C, H, W).
        gradient: same shape as ``activation``: ``∂S/∂A`` of the score ``S`` (not of ``exp(S)``).
    """
    a, g = _as_chw(activation, "grad_cam_pp"), _as_chw(gradient, "grad_cam_pp")
    if a.shape != g.shape:
        raise ValueError(f"grad_cam_pp: activation {tuple(a.shape)} and gradient {tuple(g.shape)} differ")
    a, g = a.double(), g.double()
    g2, g3 = g.pow(2), g.pow(3)
    den = 2 * g2 + a.sum((1, 2), keepdim=True) * g3  # Σ_ab A_ab^k per channel, times g_ij³
    ok = den != 0
    alpha = torch.where(ok, g2 / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(g))  # (C, H, W)
    w = (alpha * g.clamp(min=0)).sum((1, 2))  # (C,)
    return _relu_max_norm((w[:, None, None] * a).sum(0)).float()  # (H, W)
