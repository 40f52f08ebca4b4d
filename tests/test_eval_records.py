"""Per-image evaluation records and the paired bootstrap: exact mAP without resampling, known better subsets, Δ=0."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import val
from models.yolo import Model
from utils.bootstrap import paired_bootstrap, resample_counts
from utils.datasets import create_dataloader
from utils.eval_records import EvalRecords, RecordsScorer, records_map
from utils.metrics import ap_per_class
from utils.synthetic import generate_dataset

NAMES = ["circle", "square", "triangle", "star", "ellipse"]


# ------------------------------------------------------------------------------------------------ synthetic sets
def fake_records(n_images: int = 60, better: range = range(0), seed: int = 0, gain: bool = True) -> EvalRecords:
    """Two labels per image (classes 0 and 1); per image one sure hit, one loose hit (IoU < 0.7) and one false
    positive. On the images in ``better`` the false positive becomes a second sure hit (``gain``) or, with
    ``gain=False``, the sure hit becomes a miss."""
    rng = np.random.default_rng(seed)  # the same seed gives the same confidences: the sets differ only on `better`
    tp, conf, pcls, pimg, tcls, timg = [], [], [], [], [], []
    for i in range(n_images):
        c = rng.uniform(0.05, 1.0, 3)
        rows = [np.ones(10, bool), np.arange(10) < 4, np.zeros(10, bool)]
        if i in better:
            if gain:
                rows[2] = np.ones(10, bool)
            else:
                rows[0] = np.zeros(10, bool)
        tp += rows
        conf += list(c)
        pcls += [0, 1, 1]
        pimg += [i] * 3
        tcls += [0, 1]
        timg += [i] * 2
    return EvalRecords(images=[f"im{i}.jpg" for i in range(n_images)], tp=np.array(tp), conf=np.array(conf, np.float32),
                       pred_cls=np.array(pcls), pred_image=np.array(pimg), target_cls=np.array(tcls),
                       target_image=np.array(timg), iou_thresholds=np.linspace(0.5, 0.95, 10))


def test_a_variant_better_on_a_known_subset_has_an_interval_above_zero():
    base, var = fake_records(), fake_records(better=range(0, 60, 3))  # better on every third image
    r = paired_bootstrap([(base, var)], n=400, seed=0)
    for k in ("mAP50", "mAP50_95"):
        assert r[k].delta > 0 and r[k].lo > 0, r[k]
        assert r[k].verdict == "better" and r[k].win == 1.0 and r[k].n_resamples == 400 and r[k].n_images == 60
    worse = paired_bootstrap([(base, fake_records(better=range(0, 60, 3), gain=False))], n=400)
    assert worse["mAP50_95"].hi < 0 and worse["mAP50_95"].verdict == "worse"


def test_identical_predictions_give_zero_delta_and_a_zero_width_interval():
    base = fake_records()
    same = fake_records()  # another object with the same content, in another image order
    perm = np.random.default_rng(1).permutation(60)
    same = same.reordered([same.images[i] for i in perm])
    r = paired_bootstrap([(base, same)], n=200)
    for k in ("mAP50", "mAP50_95"):
        assert (r[k].delta, r[k].lo, r[k].hi, r[k].win) == (0.0, 0.0, 0.0, 0.0)
        assert r[k].verdict == "no detectable difference"


def test_seeds_pool_their_resamples_and_image_sets_must_match():
    base, var = fake_records(), fake_records(better=range(0, 60, 3))
    one = paired_bootstrap([(base, var)], n=100)
    two = paired_bootstrap([(base, var), (fake_records(seed=5), fake_records(seed=5))], n=100)
    assert two["mAP50"].n_resamples == 200 and two["mAP50"].n_seeds == 2
    assert two["mAP50"].delta == pytest.approx(one["mAP50"].delta / 2)  # mean over seeds of the full-set Δ
    assert two["mAP50"].lo <= 0 < two["mAP50"].hi  # half the pooled Δs are 0: the seeds disagree
    with pytest.raises(ValueError, match="same validation set"):
        paired_bootstrap([(base, fake_records(n_images=59))], n=10)
    assert (resample_counts(60, 50, seed=3) == resample_counts(60, 50, seed=3)).all()
    assert resample_counts(60, 50).sum(1).tolist() == [60] * 50


def test_counts_score_the_multiset_of_images_and_files_round_trip(tmp_path):
    rec = fake_records(n_images=20)
    scorer = RecordsScorer(rec)
    assert scorer.score(np.ones(20, int)) == scorer.score(None) == records_map(rec)
    counts = np.random.default_rng(0).integers(0, 3, 20)  # each image 0, 1 or 2 times: rebuild that set by hand
    keep = [np.repeat(np.where(img == i)[0], counts[i]) for i in range(20) for img in [rec.pred_image]]
    idx = np.concatenate(keep)
    tidx = np.concatenate([np.repeat(np.where(rec.target_image == i)[0], counts[i]) for i in range(20)])
    ap = ap_per_class(rec.tp[idx], rec.conf[idx], rec.pred_cls[idx], rec.target_cls[tidx])[5]
    assert scorer.score(counts) == (ap[:, 0].mean(), ap.mean(1).mean())
    back = EvalRecords.load(rec.save(tmp_path / "r.npz"))
    assert back.images == rec.images and (back.tp == rec.tp).all() and back.conf.dtype == np.float32
    assert records_map(back) == records_map(rec)


# --------------------------------------------------------------------------------------------- real validation
def test_records_reproduce_val_run_map_exactly(tmp_path):
    """A random yolov5n validated on labels made from its own detections (moved, some with the wrong class): the
    records' mAP equals val.run's, bit for bit."""
    ds = generate_dataset(tmp_path / "a", train=1, val=8, img_size=128, size_jitter=20, max_objects=2)
    torch.manual_seed(0)
    model = Model("models/yolov5n.yaml", nc=5).eval()
    model.names = NAMES
    data = {"nc": 5, "names": NAMES}
    loader = lambda d: create_dataloader(d / "images/val", 128, 4, 32, rect=True, pad=0.5, workers=0)[0]  # noqa: E731
    (tmp_path / "gt" / "labels").mkdir(parents=True)
    val.run(data, model=model, dataloader=loader(ds), save_dir=tmp_path / "gt", save_txt=True, save_conf=True,
            conf_thres=0.0025, plots=False)
    rng = np.random.default_rng(0)
    b = tmp_path / "b"
    for sub in ("images/val", "labels/val"):
        (b / sub).mkdir(parents=True)
    for k, f in enumerate(sorted((tmp_path / "gt" / "labels").glob("*.txt"))):
        rows = np.array([[float(x) for x in line.split()] for line in f.read_text().splitlines()])
        rows = rows[np.argsort(-rows[:, 5])][:8 if k < 7 else 0]  # the 8 most confident; the last image: no labels
        rows[:, 1:3] += rng.normal(0, 0.02, (len(rows), 2))  # IoUs spread over the thresholds
        rows[:3, 0] = rng.integers(0, 5, len(rows[:3]))  # some class mistakes
        shutil.copy(ds / "images/val" / f"{f.stem}.jpg", b / "images/val")
        (b / "labels/val" / f.name).write_text("".join("%d %.6f %.6f %.6f %.6f\n" % tuple(x[:5]) for x in rows))
    (_, _, map50, map_, *_), _, _ = val.run(data, model=model, dataloader=loader(b), save_dir=tmp_path / "gt",
                                            plots=False, save_records=tmp_path / "r.npz")
    rec = EvalRecords.load(tmp_path / "r.npz")
    assert 0.05 < map_ < map50 < 0.9  # a real, non-trivial score
    assert records_map(rec) == (map50, map_)
    assert rec.n_images == 8 and len(rec.target_cls) == 56 and rec.tp.shape[1] == 10
    assert rec.tp.sum(0)[0] > rec.tp.sum(0)[-1] > 0  # matches at several IoU thresholds
    val.run(data, model=model, dataloader=loader(b), save_dir=tmp_path / "gt", plots=False, max_det=3,
            save_records=tmp_path / "r3.npz")  # --max-det: at most 3 detections kept per image
    assert np.bincount(EvalRecords.load(tmp_path / "r3.npz").pred_image).max() == 3
