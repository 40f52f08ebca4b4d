"""NMS time limit: v6.1's 10 s by default, none on request (val.py; see test_train.py for val itself)."""

from __future__ import annotations

import torch

import utils.nms as nms


def _pred(bs=3, n=50):
    torch.manual_seed(0)
    p = torch.rand(bs, n, 8)
    p[..., :2] *= 200
    p[..., 2:4] = p[..., 2:4] * 40 + 5
    return p


def test_time_limit_truncates_and_none_does_not(monkeypatch):
    clock = iter(float(x) for x in range(0, 1000, 20))  # each time.time() call advances 20 s
    monkeypatch.setattr(nms.time, "time", lambda: next(clock))
    out = nms.non_max_suppression(_pred(), 0.01, 0.45)  # default 10 s: stops after the first image
    assert len(out[0]) > 0 and len(out[1]) == 0 and len(out[2]) == 0
    out = nms.non_max_suppression(_pred(), 0.01, 0.45, time_limit=None)
    assert all(len(o) > 0 for o in out)

