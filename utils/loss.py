"""Training loss: ``ComputeLoss`` with v6.1 target assignment, plus BCE variants."""

from __future__ import annotations

import torch
import torch.nn as nn

from utils.general import LOGGER
from utils.iou import (alpha_iou, canonical_iou_type, ciou, diou, eiou, giou, iou as plain_iou, siou, wiou_v1_loss,
                       wiou_v3_gain)
from utils.torch_utils import de_parallel


def smooth_BCE(eps: float = 0.1) -> tuple[float, float]:
    """Label-smoothed BCE targets ``(positive, negative) = (1 - eps/2, eps/2)``."""
    return 1.0 - 0.5 * eps, 0.5 * eps


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def put_last(t: torch.Tensor, index: tuple[torch.Tensor, ...], values: torch.Tensor) -> None:
    """``t[index] = values`` where a repeated index keeps its last value, whatever the thread count.

    A plain ``index_put_`` with repeated indices is a race on CPU once it runs on several threads (from a few
    thousand indices on): which duplicate wins, hence the objectness targets and loss, changed between
    identical runs. Here only the last occurrence of each index is written, as a serial loop would do.
    """
    lin = torch.zeros_like(index[0])
    for i, d in zip(index, t.shape):
        lin = lin * d + i  # row-major linear index
    order = torch.sort(lin, stable=True)[1]  # equal indices keep their original order
    s = lin[order]
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    keep = order[last]
    t.view(-1)[lin[keep]] = values[keep]


class BCEBlurWithLogitsLoss(nn.Module):
    """BCE-with-logits whose false negatives (label 1, low prediction) are down-weighted (unused in v6.1 training).

    Per element: ``BCE · (1 - exp((σ(x) - y - 1) / (alpha + 1e-4)))``, then the mean.
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.loss_fcn = nn.BCEWithLogitsLoss(reduction="none")
        self.alpha = alpha

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        dx = torch.sigmoid(pred) - true
        alpha_factor = 1 - torch.exp((dx - 1) / (self.alpha + 1e-4))
        return (loss * alpha_factor).mean()


class FocalLoss(nn.Module):
    """Focal loss wrapped around a BCE-with-logits criterion.

    Per element: ``BCE · α_t · (1 - p_t)^γ`` with ``p = σ(x)``, ``p_t = y·p + (1-y)(1-p)``,
    ``α_t = y·α + (1-y)(1-α)``; reduced with the wrapped criterion's original reduction.
    """

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # the focal factor is applied per element

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        p = torch.sigmoid(pred)
        p_t = true * p + (1 - true) * (1 - p)
        alpha_factor = true * self.alpha + (1 - true) * (1 - self.alpha)
        return _reduce(loss * alpha_factor * (1.0 - p_t) ** self.gamma, self.reduction)


class QFocalLoss(FocalLoss):
    """Quality focal loss (unused in v6.1 training): ``BCE · α_t · |y - σ(x)|^γ``, wrapped criterion's reduction."""

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        p = torch.sigmoid(pred)
        alpha_factor = true * self.alpha + (1 - true) * (1 - self.alpha)
        return _reduce(loss * alpha_factor * torch.abs(true - p) ** self.gamma, self.reduction)


class BoxLoss:
    """Box regression loss chosen by hyp ``iou_type`` (default CIoU), and the objectness target it gives.

    ``loss, score = box_loss(pbox, tbox)`` for (n, 4) xywh predictions and targets: per-box losses (n,) and the
    per-box value ComputeLoss turns into the objectness target (``score.detach().clamp(0)``):

    - ``CIoU``: loss 1 − CIoU, target CIoU (exactly YOLOv5 v6.1);
    - ``GIoU``, ``DIoU``, ``SIoU``, ``EIoU``: loss 1 − value, target that same variant's value;
      ``EIoU`` with hyp ``iou_gamma`` = γ > 0 is Focal-EIoU: loss IoU^γ · (1 − EIoU), the weight IoU^γ detached
      (through it the gradient would lower the IoU of poor boxes);
    - ``AlphaIoU``: loss 1 − α-CIoU with α = hyp ``iou_alpha`` (default 3); target the plain CIoU value (α = 1):
      IoU^α is a reweighting of the loss, not a quality, and as a target would squash every confidence (0.5³);
    - ``WIoU`` (Wise-IoU v3): loss r · R · (1 − IoU) (see ``utils.iou``), target the plain IoU, since the loss is
      not an IoU. r uses β = (1 − IoU)* / mean, ``mean`` a running mean of (1 − IoU) over the matched boxes,
      initialised to 1 and updated once per batch by :meth:`step` as mean ← (1 − m)·mean + m·batch mean, only
      while gradients are enabled (training; validation runs under no_grad and leaves it alone). m = hyp
      ``wiou_momentum``, else 1 − 0.05^(1/nb) with ``nb`` the batches per epoch (after one epoch the initial value
      weighs 5%), else 0.01. hyp ``wiou_alpha`` (1.9) and ``wiou_delta`` (3) are α and δ of r.

    The running mean is the loss's only state: :meth:`state_dict` / :meth:`load_state_dict` (saved in checkpoints).

    Raises:
        ValueError: an unknown ``iou_type`` (the message lists the valid names).
    """

    def __init__(self, hyp: dict, nb: int | None = None) -> None:
        self.iou_type = canonical_iou_type(hyp.get("iou_type", "CIoU"))
        self.alpha, self.gamma = float(hyp.get("iou_alpha", 3.0)), float(hyp.get("iou_gamma", 0.0))
        self.wiou_alpha, self.wiou_delta = float(hyp.get("wiou_alpha", 1.9)), float(hyp.get("wiou_delta", 3.0))
        m = hyp.get("wiou_momentum")
        self.momentum = float(m) if m is not None else 1 - 0.05 ** (1 / nb) if nb else 0.01
        self.mean = torch.tensor(1.0)  # running mean of 1 - IoU (WIoU)
        self._sum, self._n = None, 0  # this batch's sum and count of 1 - IoU (WIoU)

    def __call__(self, pbox: torch.Tensor, tbox: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.iou_type
        if t == "WIoU":
            loss, iou = wiou_v1_loss(pbox, tbox)
            l_iou = (1 - iou).detach()
            self.mean = self.mean.to(l_iou.device)
            if torch.is_grad_enabled():
                self._sum, self._n = l_iou.sum() + (0 if self._sum is None else self._sum), self._n + len(l_iou)
            return wiou_v3_gain(l_iou, self.mean, self.wiou_alpha, self.wiou_delta) * loss, iou
        if t == "AlphaIoU":
            return 1.0 - alpha_iou(pbox, tbox, alpha=self.alpha), ciou(pbox, tbox)
        value = {"CIoU": ciou, "GIoU": giou, "DIoU": diou, "SIoU": siou, "EIoU": eiou}[t](pbox, tbox)
        if t == "EIoU" and self.gamma > 0:
            w = plain_iou(pbox, tbox).detach().clamp(0) ** self.gamma
            return w * (1.0 - value), value
        return 1.0 - value, value

    def step(self) -> None:
        """End of a batch: move the WIoU running mean toward this batch's mean of 1 − IoU."""
        if self._n:
            self.mean = (1 - self.momentum) * self.mean + self.momentum * self._sum.float() / self._n
        self._sum, self._n = None, 0

    def state_dict(self) -> dict:
        """``{"iou_type": ..., "wiou_mean": float}`` (the mean only for WIoU); plain Python values."""
        return {"iou_type": self.iou_type, **({"wiou_mean": float(self.mean)} if self.iou_type == "WIoU" else {})}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore :meth:`state_dict`; a missing state (a v6.1 checkpoint) or one of another iou_type is ignored."""
        if not isinstance(state, dict) or "wiou_mean" not in state:
            return
        if state.get("iou_type") != self.iou_type:
            LOGGER.warning(f"WARNING: the checkpoint's loss state is for iou_type {state.get('iou_type')}, not "
                           f"{self.iou_type}; it is not restored")
            return
        self.mean = torch.tensor(float(state["wiou_mean"]), device=self.mean.device)


class ComputeLoss:
    """YOLOv5 v6.1 loss: IoU-family box loss (CIoU by default) + BCE objectness (IoU targets, per-level balance)
    + BCE classes.

    Args:
        model: a ``Model`` (optionally DP/DDP wrapped); its Detect head is ``de_parallel(model).model[-1]``.
        autobalance: adapt the per-level objectness weights during training.
        hyp: the (scaled) hyperparameters: ``box``, ``obj``, ``cls``, ``cls_pw``, ``obj_pw``, ``fl_gamma``,
            ``anchor_t``, optional ``label_smoothing`` and the box loss's ``iou_type`` (see :class:`BoxLoss`, which
            also says which value becomes the objectness target). The loss keeps this dict (not a copy). None
            reads ``model.hyp`` (of the wrapped model under DP/DDP), as v6.1 did.
        nb: batches per epoch (sets the WIoU running-mean momentum when the hyps do not).

    Raises:
        ValueError: no ``hyp`` given and the model has no ``.hyp``; an unknown ``iou_type``.
    """

    sort_obj_iou = False

    def __init__(self, model: nn.Module, autobalance: bool = False, *, hyp: dict | None = None,
                 nb: int | None = None) -> None:
        device = next(model.parameters()).device
        h = hyp
        if h is None:  # v6.1: the gains travel on the model
            h = model.hyp if hasattr(model, "hyp") else getattr(de_parallel(model), "hyp", None)
        if h is None:
            raise ValueError("ComputeLoss needs hyperparameters: pass hyp=... or set model.hyp")

        BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["cls_pw"]], device=device))
        BCEobj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["obj_pw"]], device=device))
        self.box_loss = BoxLoss(h, nb)
        self.cp, self.cn = smooth_BCE(eps=h.get("label_smoothing", 0.0))
        g = h.get("fl_gamma", 0.0)
        if g > 0:
            BCEcls, BCEobj = FocalLoss(BCEcls, g), FocalLoss(BCEobj, g)

        det = de_parallel(model).model[-1]  # Detect
        self.balance = [4.0, 1.0, 0.4] if det.nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02]
        self.ssi = [float(s) for s in det.stride].index(16.0) if autobalance else 0  # stride-16 level
        self.BCEcls, self.BCEobj, self.gr, self.hyp, self.autobalance = BCEcls, BCEobj, 1.0, h, autobalance
        self.na, self.nc, self.nl, self.anchors = det.na, det.nc, det.nl, det.anchors  # anchors: grid units

    def __call__(self, p: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one batch.

        Args:
            p: nl raw Detect outputs (bs, na, ny, nx, 5 + nc).
            targets: (nt, 6) rows ``image, cls, x, y, w, h`` (xywh normalised to the input image).

        Returns:
            ``(loss, items)``: (1,) total = (lbox + lobj + lcls) · bs, and the detached (3,) ``(lbox, lobj, lcls)``.
        """
        device = targets.device
        lcls, lbox, lobj = (torch.zeros(1, device=device) for _ in range(3))
        tcls, tbox, indices, anchors = self.build_targets(p, targets)

        for i, pi in enumerate(p):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros_like(pi[..., 0], device=device)  # objectness targets
            n = b.shape[0]
            if n:
                ps = pi[b, a, gj, gi]  # predictions at the matched cells
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]
                pbox = torch.cat((pxy, pwh), 1)
                box_loss, iou = self.box_loss(pbox, tbox[i])  # CIoU: 1 − CIoU and CIoU, as v6.1
                lbox += box_loss.mean()

                score_iou = iou.detach().clamp(0).type(tobj.dtype)
                if self.sort_obj_iou:  # duplicates: the highest IoU is written last and wins
                    order = torch.argsort(score_iou)
                    b, a, gj, gi, score_iou = b[order], a[order], gj[order], gi[order], score_iou[order]
                put_last(tobj, (b, a, gj, gi), (1.0 - self.gr) + self.gr * score_iou)

                if self.nc > 1:  # a single class has no classification loss
                    t = torch.full_like(ps[:, 5:], self.cn, device=device)
                    t[torch.arange(n, device=device), tcls[i]] = self.cp
                    lcls += self.BCEcls(ps[:, 5:], t)

            obji = self.BCEobj(pi[..., 4], tobj)
            lobj += obji * self.balance[i]
            if self.autobalance:
                self.balance[i] = self.balance[i] * 0.9999 + 0.0001 / obji.detach().item()

        if self.autobalance:
            self.balance = [x / self.balance[self.ssi] for x in self.balance]
        self.box_loss.step()
        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = p[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def state_dict(self) -> dict:
        """The loss's training state (the box loss's, see :meth:`BoxLoss.state_dict`), for checkpoints."""
        return self.box_loss.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        """Restore :meth:`state_dict`; None or a state without values (v6.1 checkpoints) changes nothing."""
        self.box_loss.load_state_dict(state)

    def build_targets(self, p: list[torch.Tensor], targets: torch.Tensor
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple], list[torch.Tensor]]:
        """Assign targets to (image, anchor, cell) triples per level.

        Each target is paired with every anchor (anchor-major order); pairs whose w or h ratio to the anchor
        exceeds ``anchor_t`` (either way) are dropped; each kept pair goes to its own cell plus the nearer
        horizontal and nearer vertical neighbour (rows ordered: own, left, up, right, down).

        Args:
            p: the nl raw outputs (only their grid shapes are read).
            targets: (nt, 6) ``image, cls, x, y, w, h`` normalised.

        Returns:
            ``tcls, tbox, indices, anch``: per level, classes (n,); box targets (n, 4) = (centre − cell, w, h) in
            grid units; ``(b, a, gj, gi)`` index tensors; anchors (n, 2) in grid units.
        """
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=targets.device)  # scales image, cls, x, y, w, h, anchor
        ai = torch.arange(na, device=targets.device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), ai[:, :, None]), 2)  # (na, nt, 7)

        g = 0.5  # bias
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=targets.device).float() * g

        for i in range(self.nl):
            anchors = self.anchors[i]
            ny, nx = p[i].shape[2], p[i].shape[3]
            gain[2:6] = torch.tensor([nx, ny, nx, ny], device=targets.device, dtype=gain.dtype)
            t = targets * gain  # grid units
            if nt:
                r = t[:, :, 4:6] / anchors[:, None]  # wh ratio to the anchor of each replica
                keep = torch.max(r, 1 / r).max(2)[0] < self.hyp["anchor_t"]
                t = t[keep]

                gxy = t[:, 2:4]  # centre
                gxi = gain[[2, 3]] - gxy  # centre measured from the right / bottom edge
                j, k = ((gxy % 1 < g) & (gxy > 1)).T  # left / upper neighbour
                l, m = ((gxi % 1 < g) & (gxi > 1)).T  # right / lower neighbour
                sel = torch.stack((torch.ones_like(j), j, k, l, m))  # (5, n)
                t = t.repeat((5, 1, 1))[sel]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[sel]
            else:
                t = targets[0]
                offsets = 0

            b, c = t[:, :2].long().T  # image, class
            gxy = t[:, 2:4]
            gwh = t[:, 4:6]
            gij = (gxy - offsets).long()  # assigned cell, truncation toward zero
            gij[:, 0].clamp_(0, nx - 1)
            gij[:, 1].clamp_(0, ny - 1)
            gi, gj = gij.T
            a = t[:, 6].long()

            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - gij, gwh), 1))  # centre offset in (-0.5, 1.5)
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
