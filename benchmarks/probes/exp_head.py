"""Fit lite+normality on a data set (subset of training images), keep raw maps of the test set, compare fusions."""
import sys, os, time, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); os.environ["HF_HUB_OFFLINE"] = "1"
from pathlib import Path
from hlgfa_lite import HLGFA, preset, fit, metrics
from hlgfa_lite.data import load_image, load_mask, load_test_split, train_image_paths
from hlgfa_lite.priors import low_pass
torch.set_num_threads(2)
root = Path(sys.argv[1]); ntrain = int(sys.argv[2]); out = sys.argv[3]
overrides = eval(sys.argv[4]) if len(sys.argv) > 4 else {}
cfg = preset("lite", normality="position", **overrides)
paths = train_image_paths(root)
if ntrain < len(paths):
    idx = np.linspace(0, len(paths) - 1, ntrain).round().astype(int); paths = [paths[i] for i in idx]
model = HLGFA(cfg); t0 = time.time()
rep = fit(model, paths, progress=False)
print("fit", time.time() - t0, "loss", rep.losses[0], rep.losses[-1], flush=True)
samples = load_test_split(root)
raw, masks = [], []
for s in samples:
    img = load_image(s.path)
    ins = model.inspect(img[None])
    raw.append([m[0].half() for m in ins.all_maps])
    if s.mask_path is None: masks.append(torch.zeros(256, 256, dtype=torch.bool))
    else:
        m = load_mask(s.mask_path, tuple(img.shape[-2:])).float()
        masks.append(F.interpolate(m[None, None], size=(256, 256), mode="nearest")[0, 0] > 0)
torch.save(dict(raw=[torch.stack(x) for x in zip(*raw)], masks=torch.stack(masks), labels=torch.tensor([s.label for s in samples]),
                types=[s.defect_type for s in samples], level_mean=model.level_mean, level_std=model.level_scale), out)
print("saved", time.time() - t0, flush=True)
