"""Dataset yamls, their ``download:`` hook (named Python functions, never yaml text run as code) and the download
helpers; no test touches the network (the one fetch function is replaced)."""

from __future__ import annotations

import inspect
import io
import json
import tarfile
import time
import urllib.error
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

import utils.dataset_yaml as dataset_yaml
import utils.downloads as downloads
from tests.test_dataset_converters import VOC_NAMES, objects365_json, voc_xml
from utils.archive import extract
from utils.dataset_downloads import (DOWNLOADS, WHEAT_DOMAINS, DatasetDownloadError, argoverse, get_downloader,
                                     global_wheat, objects365, sku110k, visdrone, voc, xview)
from utils.dataset_yaml import DatasetConfigError, check_dataset
from utils.downloads import DownloadError, attempt_download, download, gdrive_download, get_token, gsutil_getsize
from utils.hyps import load_hyp

ROOT = Path(__file__).resolve().parents[1]
GH = "https://github.com/ultralytics/yolov5/releases/download/v1.0/"


@pytest.fixture
def offline(monkeypatch):
    """Every fetch fails as without a network (name resolution error); returns the URLs that were tried."""
    tried = []

    def fail(url, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(downloads, "open_url", fail)
    monkeypatch.setattr(downloads, "_curl", lambda url, file: fail(url))
    return tried


def serve(monkeypatch, files: dict[str, bytes]):
    """Fetches of the URLs in ``files`` return those bytes; any other URL fails."""
    def fake(url, *args, **kwargs):
        if url not in files:
            raise urllib.error.URLError("no network")
        return io.BytesIO(files[url])
    monkeypatch.setattr(downloads, "open_url", fake)


# ------------------------------------------------------------------------------------------------- yamls
YAMLS = {"coco.yaml": (80, {0: "person", 9: "traffic light", 79: "toothbrush"}, "coco"),
         "coco128.yaml": (80, {0: "person", 79: "toothbrush"}, "https://ultralytics.com/assets/coco128.zip"),
         "VOC.yaml": (20, {0: "aeroplane", 10: "diningtable", 19: "tvmonitor"}, "voc"),
         "VisDrone.yaml": (10, {0: "pedestrian", 7: "awning-tricycle", 9: "motor"}, "visdrone"),
         "GlobalWheat2020.yaml": (1, {0: "wheat_head"}, "global_wheat"),
         "SKU-110K.yaml": (1, {0: "object"}, "sku110k"),
         "Objects365.yaml": (365, {0: "Person", 12: "Cabinet/shelf", 207: "earphone", 364: "Table Tennis"},
                             "objects365"),
         "Argoverse.yaml": (8, {6: "traffic_light", 7: "stop_sign"}, "argoverse"),
         "xView.yaml": (60, {0: "Fixed-wing Aircraft", 11: "Truck w/Box", 59: "Tower"}, "xview")}


@pytest.mark.parametrize("name", YAMLS)
def test_dataset_yaml_classes_and_download(name):
    d = yaml.safe_load((ROOT / "data" / name).read_text())
    nc, some, dl = YAMLS[name]
    assert d["nc"] == nc == len(d["names"]) == len(set(d["names"]))
    assert all(d["names"][i] == n for i, n in some.items())
    assert d["download"] == dl and get_downloader(dl) is not None
    assert d["path"] == f"../datasets/{Path(name).stem}" and d["train"] and d["val"]


def test_split_entries():
    load = lambda n: yaml.safe_load((ROOT / "data" / n).read_text())  # noqa: E731
    assert load("VOC.yaml")["train"] == ["images/train2012", "images/train2007", "images/val2012", "images/val2007"]
    assert load("coco.yaml")["test"] == "test-dev2017.txt" and load("coco128.yaml")["test"] is None
    assert len(load("GlobalWheat2020.yaml")["train"]) == 7 and "test" not in load("xView.yaml")


def test_downloading_yaml_in_data_resolves_beside_the_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "VOC.yaml").write_text((ROOT / "data" / "VOC.yaml").read_text())
    monkeypatch.setattr(dataset_yaml, "ROOT", repo)
    with pytest.raises(FileNotFoundError) as e:
        check_dataset(repo / "data" / "VOC.yaml")  # autodownload=False: nothing runs
    assert str(tmp_path / "datasets" / "VOC" / "images" / "test2007") in str(e.value)  # <repo>/../datasets/VOC
    assert "was not run" in str(e.value) and not (tmp_path / "datasets").exists()


@pytest.mark.parametrize("name, anchors, position", [("hyp.VOC.yaml", 3.3556, 28), ("hyp.Objects365.yaml", 3.2, 14)])
def test_hyp_files_load(name, anchors, position, yolo_log):
    f = ROOT / "data" / "hyps" / name
    hyp = load_hyp(f)
    keys = list(yaml.safe_load(f.read_text()))
    assert len(keys) == 29 and keys.index("anchors") == position and keys[:3] == ["lr0", "lrf", "momentum"]
    assert hyp["anchors"] == anchors and not [x for x in yolo_log if "unknown" in x]
    if name == "hyp.VOC.yaml":
        assert (hyp["lr0"], hyp["mosaic"], hyp["mixup"]) == (0.0033, 0.87158, 0.04294)
        head = f.read_text().splitlines()
        assert "# Best generation: 319" in head and "# Last generation: 434" in head
        assert f"#              0.86236,{'0.86184':>21}," in "\n".join(head)
    else:
        assert (hyp["lr0"], hyp["obj_pw"], hyp["mosaic"]) == (0.00258, 1.0, 1.0)


# ----------------------------------------------------------------------------------- download: hook
def write_yaml(tmp_path: Path, download: str, path: Path, val: str = "images/val") -> Path:
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump({"path": str(path), "train": val, "val": val, "nc": 20, "names": VOC_NAMES,
                                 "download": download}))
    return f


def test_voc_yaml_offline_fails_at_once_naming_urls_and_places(tmp_path, offline, yolo_log):
    text = (ROOT / "data" / "VOC.yaml").read_text().replace("path: ../datasets/VOC", f"path: {tmp_path / 'VOC'}")
    (tmp_path / "VOC.yaml").write_text(text)
    t = time.time()
    with pytest.raises(DatasetDownloadError) as e:
        check_dataset(tmp_path / "VOC.yaml", autodownload=True)
    assert time.time() - t < 5
    msg, images = str(e.value), tmp_path / "VOC" / "images"
    for z in "VOCtrainval_06-Nov-2007.zip", "VOCtest_06-Nov-2007.zip", "VOCtrainval_11-May-2012.zip":
        assert GH + z in msg
    assert offline == [GH + "VOCtrainval_06-Nov-2007.zip"]  # the others are not tried once the host is unreachable
    assert f"in {images}, or the extracted VOCdevkit folder" in msg and "rerun" in msg
    assert "Dataset autodownload failure" in yolo_log and not (tmp_path / "VOC").exists()  # nothing left behind


def test_python_or_bash_download_is_refused_and_not_run(tmp_path, offline):
    marker = tmp_path / "ran"
    for text in (f"import os\nopen('{marker}', 'w').write('x')\n", f"bash -c 'touch {marker}'"):
        f = write_yaml(tmp_path, text, tmp_path / "ds")
        with pytest.raises(DatasetConfigError) as e:
            check_dataset(f, autodownload=True)
        assert "never executed as Python or shell code" in str(e.value) and "voc, visdrone" in str(e.value)
        assert not marker.exists() and not offline
    assert get_downloader("VOC") is DOWNLOADS["voc"] and get_downloader("https://a.b/c.tar.gz") is None


def test_zip_url_download_unzips_beside_the_root(tmp_path, monkeypatch, yolo_log):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("c128/images/val/a.jpg", b"jpg")
    serve(monkeypatch, {"https://example.com/c128.zip": buf.getvalue()})
    d = check_dataset(write_yaml(tmp_path, "https://example.com/c128.zip", tmp_path / "c128"), autodownload=True)
    assert Path(d["val"], "a.jpg").read_bytes() == b"jpg" and not (tmp_path / "c128.zip").exists()
    assert f"Dataset autodownload success, saved to {tmp_path / 'c128'}" in yolo_log


def make_vocdevkit(images: Path) -> None:
    """VOC2007 with one train image (000001) and one test image (000002); VOC2012 with empty image sets."""
    layout = ("2007", {"train": ["000001"], "val": [], "test": ["000002"]}), ("2012", {"train": [], "val": []})
    for year, sets in layout:
        v = images / "VOCdevkit" / f"VOC{year}"
        for sub in "ImageSets/Main", "JPEGImages", "Annotations":
            (v / sub).mkdir(parents=True)
        for s, ids in sets.items():
            (v / "ImageSets" / "Main" / f"{s}.txt").write_text("".join(f"{i}\n" for i in ids))
            for i in ids:
                Image.new("RGB", (64, 48)).save(v / "JPEGImages" / f"{i}.jpg")
                (v / "Annotations" / f"{i}.xml").write_text(voc_xml(64, 48, [("cat", 0, 10, 5, 30, 40),
                                                                             ("dog", 1, 1, 1, 9, 9)]))


def test_voc_converts_a_placed_vocdevkit_without_fetching(tmp_path, offline):
    make_vocdevkit(tmp_path / "VOC" / "images")
    text = (ROOT / "data" / "VOC.yaml").read_text().replace("path: ../datasets/VOC", f"path: {tmp_path / 'VOC'}")
    (tmp_path / "VOC.yaml").write_text(text)
    d = check_dataset(tmp_path / "VOC.yaml", autodownload=True)
    root = tmp_path / "VOC"
    assert not offline and d["val"] == [str(root / "images" / "test2007")]
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(
        ["VOCdevkit", "train2012", "val2012", "train2007", "val2007", "test2007"])
    assert [p.name for p in (root / "images" / "test2007").iterdir()] == ["000002.jpg"]
    assert not (root / "images" / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").exists()  # moved
    # cat = 7: ((10+30)/2 - 1)/64, ((5+40)/2 - 1)/48, 20/64, 35/48; the difficult dog is dropped
    line = "7 0.296875 0.4479166666666667 0.3125 0.7291666666666666\n"
    assert (root / "labels" / "train2007" / "000001.txt").read_text() == line
    assert (root / "labels" / "test2007" / "000002.txt").read_text() == line
    voc({"path": str(root), "names": VOC_NAMES})  # a second run: images already moved, labels rewritten
    assert (root / "labels" / "train2007" / "000001.txt").read_text() == line


def test_visdrone_placed_folders(tmp_path, offline):
    for s in "train", "val", "test-dev", "test-challenge":
        for sub in "images", "annotations":
            (tmp_path / f"VisDrone2019-DET-{s}" / sub).mkdir(parents=True)
    train = tmp_path / "VisDrone2019-DET-train"
    for stem, text in ("0001", "10,20,30,10,1,4,0,0\n"), ("0002", "0,0,5,5,0,0,0,0\n"):
        Image.new("RGB", (100, 50)).save(train / "images" / f"{stem}.jpg")
        (train / "annotations" / f"{stem}.txt").write_text(text)
    visdrone({"path": str(tmp_path)})
    assert not offline and [p.name for p in (train / "labels").iterdir()] == ["0001.txt"]
    assert (train / "labels" / "0001.txt").read_text() == "3 0.250000 0.500000 0.300000 0.200000\n"


def test_xview_needs_placed_data_then_converts_and_splits(tmp_path):
    with pytest.raises(DatasetDownloadError, match="https://challenge.xviewdataset.org.*xView_train.geojson"):
        xview({"path": str(tmp_path)})
    for d, names in ("train_images", ["1.tif", "3.tif"]), ("val_images", ["9.tif"]):
        (tmp_path / d).mkdir()
        for n in names:
            Image.new("RGB", (200, 100)).save(tmp_path / d / n)
    feats = [{"properties": {"image_id": "1.tif", "type_id": 73, "bounds_imcoords": "10,20,50,60"}}]
    (tmp_path / "xView_train.geojson").write_text(json.dumps({"features": feats}))
    xview({"path": str(tmp_path)})
    assert (tmp_path / "labels" / "train" / "1.txt").read_text() == "48 0.150000 0.400000 0.200000 0.400000\n"
    assert (tmp_path / "images" / "train" / "3.tif").is_file() and (tmp_path / "images" / "val" / "9.tif").is_file()
    # random.seed(0); random.choices([0, 1, 2], weights=(0.9, 0.1, 0.0), k=2) == [0, 0]
    assert (tmp_path / "images" / "autosplit_train.txt").read_text() == "./train/1.tif\n./train/3.tif\n"


def test_objects365_placed_data(tmp_path, offline):
    pytest.importorskip("pycocotools", reason="pycocotools is not installed")
    for split in "train", "val":
        (tmp_path / f"zhiyuan_objv2_{split}.json").write_text(json.dumps(objects365_json()))
        (tmp_path / "images" / split / "v1" / "patch0").mkdir(parents=True)
        (tmp_path / "images" / split / "v1" / "patch0" / "obj_1.jpg").write_bytes(b"x")
        (tmp_path / "images" / split / "obj_2.jpg").write_bytes(b"x")
    objects365({"path": str(tmp_path)})
    assert not offline and (tmp_path / "images" / "val" / "obj_1.jpg").is_file()  # moved up
    assert (tmp_path / "labels" / "train" / "obj_2.txt").read_text() == "0 0.25000 0.25000 0.50000 0.50000\n"


def test_sku_argoverse_wheat_placed_data(tmp_path, offline):
    fixed = tmp_path / "SKU110K_fixed"
    (fixed / "annotations").mkdir(parents=True)
    csvs = ("train", "b.jpg,25,50,75,150,object,100,200\n"), ("val", ""), ("test", "c.jpg,0,0,10,20,o,10,20\n")
    for split, rows in csvs:
        (fixed / "annotations" / f"annotations_{split}.csv").write_text(rows)
    sku110k({"path": str(tmp_path / "SKU-110K")})
    root = tmp_path / "SKU-110K"
    assert not fixed.exists() and (root / "train.txt").read_text() == "./images/b.jpg\n"
    assert (root / "labels" / "c.txt").read_text() == "0 0.50000 0.50000 1.00000 1.00000\n"

    argo = tmp_path / "Argoverse"
    (argo / "Argoverse-1.1" / "tracking" / "train").mkdir(parents=True)
    (argo / "Argoverse-HD" / "annotations").mkdir(parents=True)
    ann = {"images": [{"name": "f0.jpg", "sid": 0}], "seq_dirs": ["train/s/ring_front_center"],
           "annotations": [{"image_id": 0, "category_id": 3, "bbox": [0, 0, 96, 60]}]}
    for split in "train", "val":
        (argo / "Argoverse-HD" / "annotations" / f"{split}.json").write_text(json.dumps(ann))
    argoverse({"path": str(argo)})
    assert (argo / "Argoverse-1.1" / "images" / "train").is_dir()  # tracking renamed
    assert (argo / "Argoverse-1.1" / "labels" / "train" / "s" / "ring_front_center" / "f0.txt").read_text() == \
        "3 0.025 0.025 0.05 0.05\n"

    wheat = tmp_path / "GlobalWheat2020"
    for d in WHEAT_DOMAINS + ("labels",):
        (wheat / d).mkdir(parents=True)
    (wheat / "ethz_1.json").write_text("{}")
    global_wheat({"path": str(wheat)})
    assert sorted(p.name for p in (wheat / "images").iterdir()) == sorted(WHEAT_DOMAINS)
    assert [p.name for p in (wheat / "annotations").iterdir()] == ["ethz_1.json"] and not offline


def test_offline_tries_one_url_and_lists_all(tmp_path, offline):
    with pytest.raises(DatasetDownloadError) as e:
        DOWNLOADS["coco"]({"path": str(tmp_path / "coco")})
    for u in GH + "coco2017labels.zip", "http://images.cocodataset.org/zips/val2017.zip":
        assert u in str(e.value)
    assert f"place coco2017labels.zip in {tmp_path}" in str(e.value) and offline == [GH + "coco2017labels.zip"]
    offline.clear()
    t = time.time()
    with pytest.raises(DatasetDownloadError) as e:
        objects365({"path": str(tmp_path / "o365")})
    assert time.time() - t < 5 and len(offline) == 1 and "zhiyuan_objv2_train.tar.gz" in offline[0]
    assert f"patch43.tar.gz (from {objects365.__globals__['O365']}val/images/v1/" in str(e.value)
    assert f"in {tmp_path / 'o365' / 'images' / 'val'}" in str(e.value)


# ------------------------------------------------------------------------------------ download helpers
def test_download_unzips_file_urls_and_reports_failures(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    with zipfile.ZipFile(tmp_path / "src" / "a.zip", "w") as z:
        z.writestr("d/a.txt", "A")
    with tarfile.open(tmp_path / "src" / "b.tar.gz", "w:gz") as t:
        (tmp_path / "b.txt").write_text("B")
        t.add(tmp_path / "b.txt", arcname="e/b.txt")
    real = downloads.open_url

    def local_only(url, *args, **kwargs):  # file:// URLs through the real function, no network
        if not url.startswith("file:"):
            raise urllib.error.URLError("no network")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(downloads, "open_url", local_only)
    urls = [(tmp_path / "src" / n).as_uri() for n in ("a.zip", "b.tar.gz")]
    download(urls, dir=tmp_path / "out", threads=2)
    out = tmp_path / "out"
    assert (out / "d" / "a.txt").read_text() == "A" and (out / "e" / "b.txt").read_text() == "B"
    assert sorted(p.name for p in out.iterdir()) == ["d", "e"]  # archives deleted
    download(urls[0], dir=tmp_path / "kept", delete=False)
    assert (tmp_path / "kept" / "a.zip").is_file() and (tmp_path / "kept" / "d" / "a.txt").is_file()
    with pytest.raises(DownloadError) as e:
        download(["https://nowhere.invalid/x.zip", urls[0] + ".missing"], dir=tmp_path / "bad")
    assert len(e.value.failures) == 2 and "https://nowhere.invalid/x.zip" in str(e.value)
    assert "not tried" in str(e.value.failures[1][2])  # the first could not connect: no second attempt
    assert not (tmp_path / "bad").exists()


def test_extract_refuses_members_outside_the_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("has_filter", [True, False])  # False: Python patch releases before tarfile filters
def test_tar_extract_refuses_links_with_or_without_tarfile_filters(tmp_path, monkeypatch, has_filter):
    if not has_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    with tarfile.open(tmp_path / "ok.tar.gz", "w:gz") as t:
        t.add(tmp_path / "d", arcname="d")
    assert (extract(tmp_path / "ok.tar.gz", tmp_path / "out") / "d" / "a.txt").read_text() == "a"
    (tmp_path / "link").symlink_to("/etc/passwd")
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as t:
        t.add(tmp_path / "link", arcname="d/link")
    with pytest.raises((tarfile.TarError, ValueError), match="link"):
        extract(tmp_path / "evil.tar.gz", tmp_path / "out2")
    assert not (tmp_path / "out2" / "d" / "link").exists()


class Broken(io.BytesIO):
    def read(self, n=-1):
        if self.tell() >= 100:
            raise ConnectionResetError("connection lost")
        return super().read(min(n, 100))


def test_safe_download_leaves_no_partial_file(tmp_path, monkeypatch, yolo_log):
    monkeypatch.setattr(downloads, "open_url", lambda url, **kw: Broken(b"x" * 1000))
    downloads.safe_download(tmp_path / "w.pt", "https://a.b/w.pt")
    assert not list(tmp_path.iterdir()) and any("Re-attempting https://a.b/w.pt" in x for x in yolo_log)
    monkeypatch.setattr(downloads, "open_url", lambda url, **kw: io.BytesIO(b"x" * 10))
    downloads.safe_download(tmp_path / "w.pt", "https://a.b/w.pt", min_bytes=100, error_msg="get it by hand")
    assert not list(tmp_path.iterdir()) and "get it by hand" in yolo_log
    assert any("size is < min_bytes=100" in x for x in yolo_log)
    downloads.safe_download(tmp_path / "w.pt", "https://a.b/w.pt")
    assert (tmp_path / "w.pt").read_bytes() == b"x" * 10


def test_attempt_download_signature_and_offline_message(tmp_path, monkeypatch, offline):
    p = inspect.signature(attempt_download).parameters
    assert list(p)[:2] == ["file", "repo"] and p["repo"].default == "ultralytics/yolov5"
    assert p["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    monkeypatch.chdir(tmp_path)
    t = time.time()
    with pytest.raises(FileNotFoundError, match="https://github.com/me/fork/releases/download/v6.1/yolov5n.pt"):
        attempt_download(tmp_path / "yolov5n.pt", repo="me/fork")
    with pytest.raises(FileNotFoundError, match=r"https://a\.b/w/x\.pt\?raw=1.*copy it to"):
        attempt_download("https://a.b/w/x.pt?raw=1")
    assert time.time() - t < 5 and not list(tmp_path.iterdir())
    (tmp_path / "x.pt").write_bytes(b"w")
    assert attempt_download("https://a.b/w/x.pt?raw=1") == "x.pt" and attempt_download("x.pt") == "x.pt"
    with pytest.raises(FileNotFoundError, match="weights not found: other.pt"):
        attempt_download("other.pt")


def test_gsutil_gdrive_token(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(downloads.shutil, "which", lambda name: None)
    assert gsutil_getsize("gs://bucket/evolve.csv") == 0
    monkeypatch.chdir(tmp_path)
    assert gdrive_download("abc", "f.zip") == 1 and not list(tmp_path.iterdir())  # cookie file removed too
    (tmp_path / "cookie").write_text("# Netscape HTTP Cookie File\n"
                                     ".drive.google.com\tTRUE\t/uc\tTRUE\t0\tdownload_warning_1\tTOKEN9\n")
    assert get_token() == "TOKEN9" and get_token(tmp_path / "none") == ""
