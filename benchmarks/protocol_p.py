"""Protocol P: YOLOv5 v6.1's early-training benchmark on BCCD, with per-epoch time, peak memory and metrics.

    python benchmarks/protocol_p.py                       # 30 epochs, yolov5n, seed 0
    python benchmarks/protocol_p.py --epochs 3 --cfg models/yolov5n-NAM.yaml --seeds 0 1

P = `train.py --cfg models/yolov5n.yaml --weights '' --data ../shared/data/bccd/bccd.yaml --img 320 --batch 16
--epochs 30 --hyp data/hyps/hyp.scratch-low.yaml --device cpu --workers 2`. Each seed runs in its own process.
The table compares with YOLOv5 v6.1 under P on this machine kind (../shared/reference): 21.0 s/epoch (10.7 train
+ 10.2 val), peak RSS 2.15 GB, final best.pt validation `all 73 933 0.101 0.303 0.115 0.0258`.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
V61 = {"s_epoch": 21.0, "rss_gb": 2.15, "P": 0.101, "R": 0.303, "mAP50": 0.115, "mAP": 0.0258}


def child(opt: argparse.Namespace) -> None:
    """Run P once in this process and print one JSON line of measurements."""
    sys.path.insert(0, str(ROOT))
    import train
    from utils.callbacks import Callbacks

    marks = {"train": [], "fit": []}
    cb = Callbacks()
    cb.register_action("on_train_epoch_end", "bench", lambda epoch=None: marks["train"].append(time.time()))
    cb.register_action("on_fit_epoch_end", "bench", lambda *a, **k: marks["fit"].append(time.time()))
    t0 = time.time()
    opt_t = train.parse_opt(True)
    for k, v in dict(cfg=opt.cfg, weights="", data=opt.data, imgsz=320, batch_size=16, epochs=opt.epochs,
                     hyp=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), device="cpu", workers=2, seed=opt.seed,
                     channels_last=opt.channels_last, keep_decoded=opt.keep_decoded, amp=opt.amp, project=opt.project,
                     name=f"P_{Path(opt.cfg).stem}_s{opt.seed}").items():
        setattr(opt_t, k, v)
    results = train.main(opt_t, cb)
    starts = [t0] + marks["fit"][:-1]
    epochs = [f - s for s, f in zip(starts, marks["fit"])]
    trains = [t - s for s, t in zip(starts, marks["train"])]
    print("PROTOCOL_P " + json.dumps({
        "seed": opt.seed, "epochs": epochs, "train_s": trains,
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "workers_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6,
        "results": list(map(float, results)), "save_dir": opt_t.save_dir}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--cfg", default=str(ROOT / "models/yolov5n.yaml"))
    ap.add_argument("--data", default=str(SHARED / "data/bccd/bccd.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--project", default=str(ROOT / "runs/protocol_p"))
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="train.py's --channels-last (default) or --no-channels-last")
    ap.add_argument("--keep-decoded", type=float, default=256.0, metavar="MB", help="train.py's --keep-decoded")
    ap.add_argument("--amp", default="auto", help="train.py's --amp (auto: bf16 on a CPU with hardware bf16, else fp32; off: fp32)")
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opt = ap.parse_args()
    if opt.child:
        return child(opt)
    rows = []
    for seed in opt.seeds:
        cmd = [sys.executable, __file__, "--child", "--seed", str(seed), "--epochs", str(opt.epochs), "--cfg", opt.cfg,
               "--data", opt.data, "--project", opt.project,
               "--channels-last" if opt.channels_last else "--no-channels-last", "--keep-decoded", str(opt.keep_decoded),
               "--amp", opt.amp]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in out.stdout.splitlines() if x.startswith("PROTOCOL_P ")), None)
        if out.returncode or line is None:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"seed {seed}: training failed (exit {out.returncode})")
        rows.append(json.loads(line[len("PROTOCOL_P "):]))
    print(f"\nProtocol P: {Path(opt.cfg).name}, {opt.epochs} epochs, bccd, img 320, batch 16, CPU, 2 workers, "
          f"{'channels-last' if opt.channels_last else 'NCHW'}, --keep-decoded {opt.keep_decoded:g} MB, --amp {opt.amp}\n")
    print(f"| {'run':<10} | {'s/epoch':>8} | {'train s':>8} | {'val s':>6} | {'RSS GB':>6} | {'P':>6} | {'R':>6} | "
          f"{'mAP@.5':>7} | {'mAP@.5:.95':>10} |")
    print("|" + "|".join("-" * (w + 2) for w in (10, 8, 8, 6, 6, 6, 6, 7, 10)) + "|")
    for r in rows:
        ep, tr = sum(r["epochs"]) / len(r["epochs"]), sum(r["train_s"]) / len(r["train_s"])
        P, R, m50, m = r["results"][:4]
        print(f"| {'seed ' + str(r['seed']):<10} | {ep:8.1f} | {tr:8.1f} | {ep - tr:6.1f} | {r['rss_gb']:6.2f} | "
              f"{P:6.3f} | {R:6.3f} | {m50:7.3f} | {m:10.4f} |")
    for r in rows:
        print(f"  seed {r['seed']} per epoch, train s: {' '.join(f'{x:.1f}' for x in r['train_s'])}; "
              f"whole s: {' '.join(f'{x:.1f}' for x in r['epochs'])}")
    if len(rows) > 1:
        mean = lambda i: sum(r["results"][i] for r in rows) / len(rows)  # noqa: E731
        print(f"| {'mean':<10} | {'':>8} | {'':>8} | {'':>6} | {'':>6} | {mean(0):6.3f} | {mean(1):6.3f} | "
              f"{mean(2):7.3f} | {mean(3):10.4f} |")
    v = V61
    print(f"| {'v6.1':<10} | {v['s_epoch']:8.1f} | {10.7:8.1f} | {10.2:6.1f} | {v['rss_gb']:6.2f} | {v['P']:6.3f} | "
          f"{v['R']:6.3f} | {v['mAP50']:7.3f} | {v['mAP']:10.4f} |")
    ref = SHARED / "reference" / "v61_results_bccd_e30.csv"
    if ref.exists():
        print("\nTrain losses vs v6.1 (epoch: ours box/obj/cls | v6.1 box/obj/cls | max rel. diff)")
        with open(ref) as f:
            v61 = [[float(x) for x in row] for row in list(csv.reader(f))[1:]]
        for r in rows:
            with open(Path(r["save_dir"]) / "results.csv") as f:
                ours = [[float(x) for x in row] for row in list(csv.reader(f))[1:]]
            worst = 0.0
            for a, b in zip(ours, v61):
                d = max(abs(a[i] - b[i]) / b[i] for i in (1, 2, 3))
                worst = max(worst, d if a[0] >= 3 else 0)
                print(f"  seed {r['seed']} epoch {int(a[0]):2d}: {a[1]:.4f}/{a[2]:.4f}/{a[3]:.4f} | "
                      f"{b[1]:.4f}/{b[2]:.4f}/{b[3]:.4f} | {d:.1%}")
            print(f"  seed {r['seed']}: largest relative train-loss difference from epoch 3 on: {worst:.1%}")


if __name__ == "__main__":
    main()
