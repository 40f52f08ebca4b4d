"""Training/validation dataset and data loaders.

``LoadImagesAndLabels`` reads a folder / list file of images with YOLO label files, verifies and caches the
labels (:mod:`utils.labels`), and serves letterboxed or mosaic-augmented images. ``create_dataloader`` wraps it
in an :class:`InfiniteDataLoader` (worker processes live across epochs). v6.1's other names are re-exported.
"""

from __future__ import annotations

import hashlib
import os
import random
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, distributed
from tqdm import tqdm

from utils import dataset_tools
from utils.augmentations import (Albumentations, augment_hsv, copy_paste, hyp_value, letterbox, mixup,
                                 random_perspective)
from utils.boxes import xyn2xy, xywhn2xyxy, xyxy2xywhn
from utils.general import LOGGER, NUM_THREADS, atomic_write
from utils.inference_loaders import LoadImages, LoadStreams  # noqa: F401  (v6.1 imports them from here)
from utils.labels import (BAR_FORMAT, CACHE_VERSION, HELP_URL, IMG_FORMATS, VID_FORMATS, class_range_problems,
                          count_row_issues, img2label_paths, img_files_from_path, load_or_scan_labels, summary_line,
                          verify_image_label, writeable_location)
from utils.infinite_loader import InfiniteDataLoader, worker_init
from utils.torch_utils import torch_distributed_zero_first

__all__ = ["IMG_FORMATS", "VID_FORMATS", "img2label_paths", "verify_image_label", "LoadImagesAndLabels",
           "InfiniteDataLoader", "create_dataloader", "LoadImages", "LoadStreams"]
__getattr__ = dataset_tools.datasets_getattr  # v6.1 names implemented elsewhere (get_hash, LoadWebcam...), on first use


class LoadImagesAndLabels(Dataset):
    """Images + YOLO labels for training and validation.

    Each item is ``(img (3, H, W) uint8 RGB, labels (n, 6) [0, cls, x, y, w, h] normalised, path, shapes)``
    where ``shapes = ((h0, w0), ((h / h0, w / w0), (padw, padh)))`` for letterboxed items and None for mosaics.
    ``nc`` (optional, not in v6.1) drops label rows whose class is ``>= nc`` with a warning naming file:line
    (ignored with ``single_cls``, where every class becomes 0).
    """

    cache_version = CACHE_VERSION

    def __init__(self, path: str | Path | list, img_size: int = 640, batch_size: int = 16, augment: bool = False,
                 hyp: dict | None = None, rect: bool = False, image_weights: bool = False,
                 cache_images: bool | str = False, single_cls: bool = False, stride: int = 32, pad: float = 0.0,
                 prefix: str = "", nc: int | None = None):
        self.img_size = img_size
        self.augment = augment
        self.hyp = hyp
        self.image_weights = image_weights
        self.rect = False if image_weights else rect
        self.mosaic = self.augment and not self.rect  # load 4 images at a time into a mosaic (train only)
        self.mosaic_border = [-img_size // 2, -img_size // 2]
        self.stride = stride
        self.path = path
        self.albumentations = Albumentations() if augment else None

        img_files = img_files_from_path(path, prefix)
        label_files = img2label_paths(img_files)
        last = Path(path[-1] if isinstance(path, (list, tuple)) else path)
        cache_path = (last if last.is_file() else Path(label_files[0]).parent).with_suffix(".cache")
        cache, where, reused = load_or_scan_labels(img_files, label_files, cache_path, prefix)
        self._take_labels(cache, where if reused else None, cache_path, prefix, nc, single_cls)

        n = len(self.shapes)
        bi = np.floor(np.arange(n) / batch_size).astype(int)  # batch index of each image
        self.batch, self.n, self.indices = bi, n, range(n)
        self.batch_shapes = None
        if self.rect:
            self._sort_rect(bi, img_size, stride, pad)

        self.imgs: list[np.ndarray | None] = [None] * n
        self.img_hw0: list[tuple | None] = [None] * n
        self.img_hw: list[tuple | None] = [None] * n
        self.img_npy: list[Path | None] = [None] * n
        self.decoded: dict[int, tuple] | None = None  # see keep_decoded()
        if cache_images:
            self._cache_images(cache_images, prefix)

    def keep_decoded(self, budget_mb: float) -> bool:
        """Keep each image, once decoded and resized, in the memory of the process that loaded it (each loader
        worker has its own copy), when all of them fit in ``budget_mb``; returns whether they do.

        The same pixels as a fresh read (no other decoding or resizing), so results do not change; a mosaic reads
        four images per sample, and decoding them was most of the loaders' CPU time, taken from training on a
        small machine. Off with ``--cache`` (the images are cached already), or a budget of 0.
        """
        need = sum(h * w * 3 for h, w in (self._resized_hw(i) for i in range(len(self.img_files)))) / 1e6
        self.decoded = {} if 0 < need <= budget_mb and self.imgs[0] is None else None
        return self.decoded is not None

    def _take_labels(self, cache: dict, reused_from: Path | None, cache_path: Path, prefix: str,
                     nc: int | None, single_cls: bool) -> None:
        """Unpack the cache dict into attributes and log its warnings and the summary line."""
        nf, nm, ne, ncorrupt, _ = cache["results"]
        msgs = list(cache["msgs"])
        entries = {k: v for k, v in cache.items() if k not in ("hash", "version", "msgs", "results")}
        if not entries:
            raise FileNotFoundError(f"{prefix}No usable images in {self.path} ({ncorrupt} corrupt)\n{HELP_URL}")
        self.img_files = list(entries)
        self.label_files = img2label_paths(self.img_files)
        self.labels = [np.array(v[0], dtype=np.float32).reshape(-1, 5) for v in entries.values()]
        self.shapes = np.array([v[1] for v in entries.values()], dtype=np.float64)  # (w, h)
        self.segments = [list(v[2]) for v in entries.values()]
        if nc is not None and not single_cls:  # class range; here so that the cache does not depend on nc
            for i, lb in enumerate(self.labels):
                ok, m = class_range_problems(self.label_files[i], lb, nc, prefix)
                if m:
                    msgs += m
                    self.labels[i] = lb[ok]
                    self.segments[i] = [s for s, k in zip(self.segments[i], ok) if k] if self.segments[i] else []
                    ne += int(not ok.any())
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0
        if msgs:
            LOGGER.warning("\n".join(msgs))
        shown = reused_from if reused_from else cache_path.parent / cache_path.stem
        LOGGER.info(f"{prefix}Scanning '{shown}' images and labels... "
                    f"{summary_line((nf, nm, ne, ncorrupt), *count_row_issues(msgs))}")
        if nf == 0:
            if self.augment:
                raise ValueError(f"{prefix}No labels in {cache_path}. Can not train without labels. {HELP_URL}")
            LOGGER.warning(f"{prefix}WARNING: No labels found in {cache_path}. {HELP_URL}")

    def _sort_rect(self, bi: np.ndarray, img_size: int, stride: int, pad: float) -> None:
        """Sort by aspect ratio h/w and compute one letterbox shape (h, w) per batch (a multiple of ``stride``)."""
        ar = self.shapes[:, 1] / self.shapes[:, 0]
        irect = ar.argsort(kind="stable")
        self.img_files = [self.img_files[i] for i in irect]
        self.label_files = [self.label_files[i] for i in irect]
        self.labels = [self.labels[i] for i in irect]
        self.segments = [self.segments[i] for i in irect]
        self.shapes = self.shapes[irect]
        ar = ar[irect]
        shapes = []
        for i in range(bi[-1] + 1):
            ari = ar[bi == i]
            mini, maxi = ari.min(), ari.max()
            shapes.append([maxi, 1] if maxi < 1 else [1, 1 / mini] if mini > 1 else [1, 1])
        self.batch_shapes = np.ceil(np.array(shapes) * img_size / stride + pad).astype(int) * stride

    def _resized_hw(self, i: int, hw0: tuple[int, int] | None = None) -> tuple[int, int]:
        """(h, w) of image ``i`` (original size ``hw0``, default from the scan) after :meth:`load_image` resizing.

        The long side becomes ``img_size``; no side is less than 1 pixel (a 10x3000 image at 64 is 1x64, not 0x64).
        """
        h0, w0 = hw0 or (int(self.shapes[i][1]), int(self.shapes[i][0]))
        r = self.img_size / max(h0, w0)
        return (max(1, int(h0 * r)), max(1, int(w0 * r))) if r != 1 else (h0, w0)

    @staticmethod
    def npy_name(img_file: str) -> str:
        """Disk-cache name of an image: stem + hash of its resolved path (suffix included), one per source file."""
        key = hashlib.md5(os.fsencode(Path(img_file).resolve()), usedforsecurity=False).hexdigest()[:12]
        return f"{Path(img_file).stem}-{key}.npy"

    def _npy_fresh(self, i: int) -> bool:
        """Whether the ``.npy`` of image ``i`` exists, is not older than the image and has the resized shape."""
        npy = self.img_npy[i]
        try:
            if npy.stat().st_mtime_ns < os.stat(self.img_files[i]).st_mtime_ns:
                return False
            return np.load(npy, mmap_mode="r", allow_pickle=False).shape[:2] == self._resized_hw(i)
        except (OSError, ValueError, EOFError):  # missing, unreadable or truncated array
            return False

    def _cache_images(self, mode: bool | str, prefix: str) -> None:
        """Cache resized images in RAM, or as ``.npy`` files in ``<first image dir>_npy`` for ``'disk'``."""
        if mode == "disk":
            npy_dir = writeable_location(Path(Path(self.img_files[0]).parent.as_posix() + "_npy"), prefix)
            if npy_dir is None:
                LOGGER.warning(f"{prefix}WARNING: no writeable folder for the disk image cache, not caching")
                return
            npy_dir.mkdir(parents=True, exist_ok=True)
            self.img_npy = [npy_dir / self.npy_name(f) for f in self.img_files]

        def work(i: int) -> int:
            if mode == "disk":
                npy = self.img_npy[i]
                if not self._npy_fresh(i):  # missing, older than its image, or another size
                    self.img_npy[i] = None  # read the original image, not a stale array
                    im = self.load_image(i)[0]
                    atomic_write(npy, lambda f: np.save(f, im, allow_pickle=False))
                    self.img_npy[i] = npy
                return npy.stat().st_size
            self.imgs[i], self.img_hw0[i], self.img_hw[i] = self.load_image(i)
            return self.imgs[i].nbytes

        gb = 0.0
        with ThreadPool(NUM_THREADS) as pool:
            pbar = tqdm(pool.imap(work, range(self.n)), total=self.n, bar_format=BAR_FORMAT, leave=False)
            for b in pbar:
                gb += b
                pbar.desc = f"{prefix}Caching images ({gb / 1e9:.1f}GB {mode})"
        LOGGER.info(f"{prefix}Caching images ({gb / 1e9:.1f}GB {mode})")

    def __len__(self) -> int:
        return len(self.img_files)

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """``(BGR image resized so its long side is img_size, (h0, w0) original, (h, w) resized)``."""
        if self.imgs[i] is not None:
            return self.imgs[i], self.img_hw0[i], self.img_hw[i]
        if self.decoded is not None and i in self.decoded:
            return self.decoded[i]
        npy = self.img_npy[i]
        if npy is not None and npy.exists():
            im = np.load(npy, allow_pickle=False)
            w0, h0 = (int(x) for x in self.shapes[i])
        else:
            im = cv2.imread(self.img_files[i])  # BGR
            if im is None:
                raise FileNotFoundError(f"Image Not Found {self.img_files[i]}")
            h0, w0 = im.shape[:2]
        h, w = self._resized_hw(i, (h0, w0))
        if im.shape[:2] != (h, w):
            interp = cv2.INTER_LINEAR if self.augment or self.img_size > max(h0, w0) else cv2.INTER_AREA
            im = cv2.resize(im, (w, h), interpolation=interp)
        if self.decoded is not None:
            self.decoded[i] = im, (h0, w0), im.shape[:2]
        return im, (h0, w0), im.shape[:2]

    def load_mosaic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """4-image mosaic around a random centre, then copy-paste and random perspective.

        Returns:
            ``(image (img_size, img_size, 3), labels (n, 5) [cls, x1, y1, x2, y2] pixels)``.
        """
        hyp, s = self.hyp, self.img_size
        yc, xc = (int(random.uniform(-x, 2 * s + x)) for x in self.mosaic_border)  # centre
        indices = [index] + random.choices(self.indices, k=3)
        random.shuffle(indices)
        img4 = np.full((s * 2, s * 2, 3), 114, dtype=np.uint8)
        labels4, segments4 = [], []
        for k, idx in enumerate(indices):
            img, _, (h, w) = self.load_image(idx)
            if k == 0:  # top-left: the image's bottom-right corner at (xc, yc)
                x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
                x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
            elif k == 1:  # top-right: bottom-left corner at (xc, yc)
                x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s * 2), yc
                x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
            elif k == 2:  # bottom-left: top-right corner at (xc, yc)
                x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s * 2, yc + h)
                x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
            else:  # bottom-right: top-left corner at (xc, yc)
                x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s * 2), min(s * 2, yc + h)
                x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
            img4[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
            padw, padh = x1a - x1b, y1a - y1b
            labels = self.labels[idx].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw, padh)  # normalised xywh -> pixel xyxy
            labels4.append(labels)
            segments4 += [xyn2xy(x, w, h, padw, padh) for x in self.segments[idx]]
        labels4 = np.concatenate(labels4, 0)
        np.clip(labels4[:, 1:], 0, 2 * s, out=labels4[:, 1:])
        for x in segments4:
            np.clip(x, 0, 2 * s, out=x)
        if len(segments4) != len(labels4):
            segments4 = []  # some tiles have no polygons: boxes only
        img4, labels4, segments4 = copy_paste(img4, labels4, segments4, p=hyp_value(hyp, "copy_paste"))
        return random_perspective(img4, labels4, segments4, degrees=hyp_value(hyp, "degrees"),
                                  translate=hyp_value(hyp, "translate"), scale=hyp_value(hyp, "scale"),
                                  shear=hyp_value(hyp, "shear"), perspective=hyp_value(hyp, "perspective"),
                                  border=self.mosaic_border)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, tuple | None]:
        index = self.indices[index]  # linear, shuffled, or image-weighted
        hyp = self.hyp
        # Checked per item, not at construction: kmean_anchors builds an augment=True set without hyp (v6.1) and
        # reads only its labels and shapes.
        if self.augment and hyp is None:
            raise ValueError("augment=True needs a hyp dict (e.g. data/hyps/hyp.scratch-low.yaml)")
        if self.mosaic and random.random() < hyp_value(hyp, "mosaic"):
            img, labels = self.load_mosaic(index)
            shapes = None
            if random.random() < hyp_value(hyp, "mixup"):
                img, labels = mixup(img, labels, *self.load_mosaic(random.randint(0, self.n - 1)))
        else:
            img, (h0, w0), (h, w) = self.load_image(index)
            shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
            img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h / h0, w / w0), pad)  # for mapping predictions back (COCO mAP)
            labels = self.labels[index].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
            if self.augment:
                img, labels = random_perspective(img, labels, degrees=hyp_value(hyp, "degrees"),
                                                 translate=hyp_value(hyp, "translate"),
                                                 scale=hyp_value(hyp, "scale"), shear=hyp_value(hyp, "shear"),
                                                 perspective=hyp_value(hyp, "perspective"))
        nl = len(labels)
        if nl:  # pixel xyxy -> normalised xywh
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            img, labels = self.albumentations(img, labels)
            nl = len(labels)
            augment_hsv(img, hgain=hyp_value(hyp, "hsv_h"), sgain=hyp_value(hyp, "hsv_s"),
                        vgain=hyp_value(hyp, "hsv_v"))
            if random.random() < hyp_value(hyp, "flipud"):
                img = np.flipud(img)
                if nl:
                    labels[:, 2] = 1 - labels[:, 2]
            if random.random() < hyp_value(hyp, "fliplr"):
                img = np.fliplr(img)
                if nl:
                    labels[:, 1] = 1 - labels[:, 1]
        labels_out = torch.zeros((nl, 6))
        if nl:
            labels_out[:, 1:] = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        img = np.ascontiguousarray(img.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(img), labels_out, self.img_files[index], shapes

    @staticmethod
    def collate_fn(batch: list) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """Stack images (bs, 3, H, W) and concatenate labels into targets (N, 6) ``[img_idx, cls, x, y, w, h]``."""
        im, label, path, shapes = zip(*batch)
        for i, lb in enumerate(label):
            lb[:, 0] = i  # image index within the batch
        return torch.stack(im, 0), torch.cat(label, 0), path, shapes

    @staticmethod
    def collate_fn4(batch: list) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """Quad collate: every 4 items become one 2x image (upsampled first item or a 2x2 tile)."""
        im, label, path, shapes = zip(*batch)
        n = len(shapes) // 4
        im4, label4 = [], []
        shift_x = torch.tensor([[0.0, 0, 1, 0, 0, 0]])
        shift_y = torch.tensor([[0.0, 0, 0, 1, 0, 0]])
        half = torch.tensor([[1.0, 1, 0.5, 0.5, 0.5, 0.5]])
        for i in range(0, n * 4, 4):
            if random.random() < 0.5:  # first image upsampled 2x, its normalised labels unchanged
                x = F.interpolate(im[i].unsqueeze(0).float(), scale_factor=2.0, mode="bilinear",
                                  align_corners=False)[0].round().clamp(0, 255).to(im[i].dtype)
                lb = label[i]
            else:  # 2x2 tile: i top-left, i+1 top-right, i+2 bottom-left, i+3 bottom-right
                x = torch.cat((torch.cat((im[i], im[i + 1]), 2), torch.cat((im[i + 2], im[i + 3]), 2)), 1)
                lb = torch.cat((label[i], label[i + 1] + shift_x, label[i + 2] + shift_y,
                                label[i + 3] + shift_x + shift_y), 0) * half
            im4.append(x)
            label4.append(lb)
        for i, lb in enumerate(label4):
            lb[:, 0] = i
        return torch.stack(im4, 0), torch.cat(label4, 0), path[::4][:n], shapes[::4][:n]


def create_dataloader(path: str | Path | list, imgsz: int, batch_size: int, stride: int, single_cls: bool = False,
                      hyp: dict | None = None, augment: bool = False, cache: bool | str = False, pad: float = 0.0,
                      rect: bool = False, rank: int = -1, workers: int = 8, image_weights: bool = False,
                      quad: bool = False, prefix: str = "", shuffle: bool = False,
                      nc: int | None = None, keep_decoded_mb: float = 256.0) -> tuple[DataLoader, LoadImagesAndLabels]:
    """Build the dataset (rank 0 first under DDP) and its loader.

    Decoded images are kept in each worker when the whole set fits ``keep_decoded_mb`` (see
    :meth:`LoadImagesAndLabels.keep_decoded`; 0 turns it off).

    Shuffling is reproducible: the loader's generator is seeded from ``torch.initial_seed()`` (set by
    ``init_seeds``) plus the rank, and torch seeds ``random``/numpy in each worker from it.
    """
    if rect and shuffle:
        LOGGER.warning("WARNING: --rect is incompatible with DataLoader shuffle, setting shuffle=False")
        shuffle = False
    with torch_distributed_zero_first(rank):  # rank 0 scans and caches first, the others reuse the cache
        dataset = LoadImagesAndLabels(path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect,
                                      image_weights=image_weights, cache_images=cache, single_cls=single_cls,
                                      stride=int(stride), pad=pad, prefix=prefix, nc=nc)
    dataset.keep_decoded(keep_decoded_mb)
    batch_size = min(batch_size, len(dataset))
    nd = torch.cuda.device_count()
    nw = min((os.cpu_count() or 1) // max(nd, 1), batch_size if batch_size > 1 else 0, workers)
    sampler = None if rank == -1 else distributed.DistributedSampler(dataset, shuffle=shuffle)
    loader_cls = DataLoader if image_weights else InfiniteDataLoader  # plain loader sees new image weights
    generator = torch.Generator()
    generator.manual_seed(torch.initial_seed() % 2 ** 62 + max(rank, 0))
    loader = loader_cls(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, num_workers=nw,
                        sampler=sampler, pin_memory=torch.cuda.is_available(), generator=generator,
                        worker_init_fn=worker_init,
                        collate_fn=LoadImagesAndLabels.collate_fn4 if quad else LoadImagesAndLabels.collate_fn)
    return loader, dataset
