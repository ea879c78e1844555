"""Extract low-res features F_L and pooled high-res target T for magnetic tile under two view policies."""
import sys, time, glob, os
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
os.environ["HF_HUB_OFFLINE"] = "1"
from hlgfa_lite import HLGFA, preset
from hlgfa_lite.data import load_image, load_mask, load_test_split, list_images

torch.set_num_threads(2)
root = Path(sys.argv[1]); mode = sys.argv[2]; out = Path(sys.argv[3]); ntrain = int(sys.argv[4])
cfg = preset("lite")
model = HLGFA(cfg)
HR, LR = cfg.hr_size, cfg.lr_size

def view(img):  # (3,H,W) -> (1,3,HR,HR), valid (HR,HR) bool
    H, W = img.shape[-2:]
    if mode == "squash":
        x = F.interpolate(img[None], size=(HR, HR), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return x, torch.ones(HR, HR, dtype=torch.bool)
    s = HR / max(H, W); h, w = max(1, round(H * s)), max(1, round(W * s))
    x = F.interpolate(img[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (HR - h) // 2, (HR - w) // 2
    padmode = "reflect" if mode == "letterbox" else "constant"
    x = F.pad(x, [left, HR - w - left, top, HR - h - top], mode=padmode)
    valid = torch.zeros(HR, HR, dtype=torch.bool); valid[top:top + h, left:left + w] = True
    return x, valid

def feats(img):
    hr, valid = view(img)
    lr = F.interpolate(hr, size=(LR, LR), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    high, low = model.backbone(hr), model.backbone(lr)
    T = [F.avg_pool2d(h, 2) for h in high]
    return [l[0].half() for l in low], [t[0].half() for t in T], valid

train = list_images(root / "train" / "good")
idx = np.linspace(0, len(train) - 1, ntrain).round().astype(int)
tr = [train[i] for i in idx]
rest = [p for i, p in enumerate(train) if i not in set(idx.tolist())]
hold = rest[:: max(1, len(rest) // 60)][:60]
samples = load_test_split(root)
res = {}
t0 = time.time()
for name, paths in [("train", tr), ("hold", hold), ("test", [s.path for s in samples])]:
    L, T, V, M = [], [], [], []
    for p in paths:
        img = load_image(p)
        with torch.no_grad():
            l, t, v = feats(img)
        L.append(l); T.append(t); V.append(v)
    res[name] = dict(low=[torch.stack(x) for x in zip(*L)], tgt=[torch.stack(x) for x in zip(*T)], valid=torch.stack(V))
    print(name, len(paths), time.time() - t0, flush=True)
masks = []
for s in samples:
    if s.mask_path is None:
        masks.append(torch.zeros(256, 256, dtype=torch.bool))
    else:
        img = load_image(s.path)
        m = load_mask(s.mask_path, tuple(img.shape[-2:])).float()
        masks.append(F.interpolate(m[None, None], size=(256, 256), mode="nearest")[0, 0] > 0)
res["masks"] = torch.stack(masks); res["labels"] = torch.tensor([s.label for s in samples])
res["types"] = [s.defect_type for s in samples]
torch.save(res, out)
print("done", time.time() - t0)
