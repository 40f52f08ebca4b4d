"""The IoU family of box overlap measures, element-wise over pairs of boxes (the box regression loss's choices).

Every function takes ``box1`` (predictions) and ``box2`` (targets) of shape ``(..., 4)`` that broadcast against
each other, as centre x, centre y, width, height (``xywh=True``) or corners x1, y1, x2, y2, and returns the
measure per pair. All of them are symmetric in the two boxes. ``eps`` guards the divisions exactly as YOLOv5
v6.1's ``bbox_iou`` did: it is added to both heights and to the union (and to the enclosing area, the squared
enclosing diagonal and the other denominators below).

Notation (per pair): IoU = |B1 ∩ B2| / |B1 ∪ B2|; (x, y, w, h) the centre and size of box1, (x', y', w', h')
those of box2; Cw, Ch the width and height of the smallest box enclosing both; c² = Cw² + Ch² its squared
diagonal; ρ² = (x − x')² + (y − y')² the squared centre distance.

The matching losses are ``1 − value`` for GIoU, DIoU, CIoU, SIoU, EIoU and alpha-IoU; WIoU is a loss directly
(:func:`wiou_v1_loss`, :func:`wiou_v3_gain`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

IOU_TYPES = ("GIoU", "DIoU", "CIoU", "SIoU", "EIoU", "AlphaIoU", "WIoU")  # hyp ``iou_type`` values
_ALIASES = {t.lower(): t for t in IOU_TYPES} | {"alpha": "AlphaIoU", "wiouv3": "WIoU"}


def canonical_iou_type(name: object) -> str:
    """The canonical spelling of an ``iou_type`` (case, '-', '_' and spaces ignored: ``alpha-iou`` is AlphaIoU).

    Raises:
        ValueError: not one of :data:`IOU_TYPES`; the message lists them.
    """
    key = str(name).lower().replace("-", "").replace("_", "").replace(" ", "")
    if not isinstance(name, str) or key not in _ALIASES:
        raise ValueError(f"unknown iou_type {name!r}: valid names are {', '.join(IOU_TYPES)} (case-insensitive)")
    return _ALIASES[key]


class BoxPair(NamedTuple):
    """Shared geometry of two box sets (see the module notation); ``h1``/``h2`` already include ``eps``."""

    w1: torch.Tensor
    h1: torch.Tensor
    w2: torch.Tensor
    h2: torch.Tensor
    inter: torch.Tensor
    union: torch.Tensor
    iou: torch.Tensor
    cw: torch.Tensor  # enclosing box width
    ch: torch.Tensor  # enclosing box height
    c2: torch.Tensor  # squared enclosing diagonal + eps
    rho2: torch.Tensor  # squared centre distance
    dx: torch.Tensor  # centre offset x' − x
    dy: torch.Tensor  # centre offset y' − y


def _corners(box: torch.Tensor, xywh: bool) -> tuple[torch.Tensor, ...]:
    if not xywh:
        return box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def box_pair(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7) -> BoxPair:
    """The geometry every measure reads, computed in v6.1's operation order (so CIoU stays bit-identical)."""
    b1_x1, b1_y1, b1_x2, b1_y2 = _corners(box1, xywh)
    b2_x1, b2_y1, b2_x2, b2_y2 = _corners(box2, xywh)
    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * \
            (torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)).clamp(0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    sx, sy = b2_x1 + b2_x2 - b1_x1 - b1_x2, b2_y1 + b2_y2 - b1_y1 - b1_y2  # twice the centre offsets
    return BoxPair(w1, h1, w2, h2, inter, union, inter / union, cw, ch, cw ** 2 + ch ** 2 + eps,
                   (sx ** 2 + sy ** 2) / 4, sx / 2, sy / 2)


# --------------------------------------------------------------------------------- penalties (shared by alpha)
def _giou_terms(g: BoxPair, eps: float) -> list[torch.Tensor]:
    c_area = g.cw * g.ch + eps
    return [(c_area - g.union) / c_area]


def _diou_terms(g: BoxPair, eps: float) -> list[torch.Tensor]:
    return [g.rho2 / g.c2]


def _ciou_terms(g: BoxPair, eps: float) -> list[torch.Tensor]:
    v = (4 / math.pi ** 2) * torch.pow(torch.atan(g.w2 / g.h2) - torch.atan(g.w1 / g.h1), 2)
    with torch.no_grad():
        a = v / (v - g.iou + (1 + eps))  # trade-off weight, a constant of the gradient
    return [g.rho2 / g.c2, v * a]


_TERMS = {"IoU": lambda g, eps: [], "GIoU": _giou_terms, "DIoU": _diou_terms, "CIoU": _ciou_terms}


# ------------------------------------------------------------------------------------------------ the measures
def iou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Plain IoU = |B1 ∩ B2| / (|B1| + |B2| − |B1 ∩ B2| + eps), in [0, 1]."""
    return box_pair(box1, box2, xywh, eps).iou


def giou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Generalized IoU: GIoU = IoU − (|C| − |B1 ∪ B2|) / |C|, C the enclosing box (|C| = Cw·Ch + eps); in (−1, 1]."""
    g = box_pair(box1, box2, xywh, eps)
    return g.iou - _giou_terms(g, eps)[0]


def diou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Distance IoU: DIoU = IoU − ρ² / c²; in (−1, 1]."""
    g = box_pair(box1, box2, xywh, eps)
    return g.iou - _diou_terms(g, eps)[0]


def ciou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU (YOLOv5 v6.1's box loss): CIoU = IoU − (ρ² / c² + a·v).

    v = 4/π² · (atan(w'/h') − atan(w/h))² measures the aspect-ratio mismatch; a = v / (v − IoU + 1 + eps) is
    treated as a constant (no gradient flows through it).
    """
    g = box_pair(box1, box2, xywh, eps)
    d, av = _ciou_terms(g, eps)
    return g.iou - (d + av)


def siou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7,
         theta: float = 4.0) -> torch.Tensor:
    """SCYLLA IoU: SIoU = IoU − (Δ + Ω) / 2, so the loss is 1 − IoU + (Δ + Ω) / 2.

    - angle cost Λ = 1 − 2·sin²(arcsin(|y' − y| / σ) − π/4), σ = √ρ² the centre distance. Since
      1 − 2 sin²(t − π/4) = sin 2t = 2 sin t cos t, this is computed as Λ = 2·|x' − x|·|y' − y| / (ρ² + eps)
      (no arcsin or square root, so the gradient stays finite for aligned or coincident centres);
    - distance cost Δ = Σ_{t=x,y} (1 − exp(−γ·ρ_t)), ρ_x = ((x' − x) / Cw)², ρ_y = ((y' − y) / Ch)², γ = 2 − Λ;
    - shape cost Ω = Σ_{t=w,h} (1 − exp(−ω_t))^θ, ω_w = |w − w'| / max(w, w'), ω_h = |h − h'| / max(h, h'),
      θ = 4 by default.
    """
    g = box_pair(box1, box2, xywh, eps)
    angle = 2 * (g.dx * g.dy).abs() / (g.dx ** 2 + g.dy ** 2 + eps)
    gamma = 2 - angle
    rho_x, rho_y = (g.dx / (g.cw + eps)) ** 2, (g.dy / (g.ch + eps)) ** 2
    distance = 2 - torch.exp(-gamma * rho_x) - torch.exp(-gamma * rho_y)
    omega_w = (g.w1 - g.w2).abs() / (torch.max(g.w1, g.w2) + eps)
    omega_h = (g.h1 - g.h2).abs() / (torch.max(g.h1, g.h2) + eps)
    shape = (1 - torch.exp(-omega_w)) ** theta + (1 - torch.exp(-omega_h)) ** theta
    return g.iou - (distance + shape) / 2


def eiou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Efficient IoU: EIoU = IoU − ρ² / c² − (w − w')² / Cw² − (h − h')² / Ch² (eps added to Cw² and Ch²).

    Focal-EIoU (loss IoU^γ · (1 − EIoU)) is applied by the loss, see ``utils.loss.BoxLoss``.
    """
    g = box_pair(box1, box2, xywh, eps)
    return g.iou - g.rho2 / g.c2 - (g.w1 - g.w2) ** 2 / (g.cw ** 2 + eps) - (g.h1 - g.h2) ** 2 / (g.ch ** 2 + eps)


def alpha_iou(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7, alpha: float = 3.0,
              base: str = "CIoU") -> torch.Tensor:
    """Alpha-IoU: the power ``alpha`` applied to the IoU and to each penalty term of the base variant.

    value = IoU^α − Σ_k P_k^α, loss = 1 − value, with the penalties P_k of ``base``:
    ``IoU``: none; ``GIoU``: (|C| − |B1 ∪ B2|) / |C|; ``DIoU``: ρ²/c²; ``CIoU`` (default): ρ²/c² and a·v
    (so α-CIoU = IoU^α − (ρ²/c²)^α − (a·v)^α). Every base is clamped at ``eps`` before the power, so the gradient
    stays finite for α < 1; α = 1 gives the base variant (up to that clamp).
    """
    g = box_pair(box1, box2, xywh, eps)
    value = g.iou.clamp(min=eps) ** alpha
    for term in _TERMS[base](g, eps):
        value = value - term.clamp(min=eps) ** alpha
    return value


def wiou_v1_loss(box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, eps: float = 1e-7
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Wise-IoU v1: L = R · (1 − IoU) with the distance attention R = exp(ρ² / (Cw² + Ch²)*), R in [1, e).

    ``*``: the enclosing box size is detached (no gradient through Cw, Ch), so R does not push the boxes to
    grow the enclosing box. Returns ``(L, IoU)``; the v3 focusing factor is :func:`wiou_v3_gain`.
    """
    g = box_pair(box1, box2, xywh, eps)
    r = torch.exp(g.rho2 / g.c2.detach())
    return r * (1 - g.iou), g.iou


def wiou_v3_gain(l_iou: torch.Tensor, mean: torch.Tensor | float, alpha: float = 1.9,
                 delta: float = 3.0) -> torch.Tensor:
    """Wise-IoU v3 non-monotonic focusing factor r = β / (δ · α^(β − δ)), a constant of the gradient.

    β = L_IoU* / mean(L_IoU) is the outlier degree of each box, L_IoU = 1 − IoU detached, ``mean`` the running
    mean of L_IoU kept by the loss. r = 1 at β = δ; r is largest at β = 1 / ln α and decays for outliers.
    """
    beta = l_iou.detach() / mean
    return beta / (delta * torch.pow(alpha, beta - delta))
