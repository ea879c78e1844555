import sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from hlgfa_lite import metrics
from hlgfa_lite.priors import low_pass
d = torch.load(sys.argv[1], weights_only=False)
labels = d["labels"].numpy(); masks = d["masks"].numpy(); types = np.array(d["types"])
raw = [r.float() for r in d["raw"]]; mu, sd = d["level_mean"], d["level_std"]
z = [F.interpolate(((r - mu[i]) / sd[i])[:, None], size=(256, 256), mode="bilinear", align_corners=False)[:, 0] for i, r in enumerate(raw)]
def ev(name, weights, sigma=4.0, topk=0.01):
    A = sum(w * zi for w, zi in zip(weights, z) if w) / sum(weights)
    A = low_pass(A[:, None], sigma)[:, 0]
    flat = A.flatten(1); k = max(1, int(topk * flat.shape[1]))
    s = flat.topk(k, 1).values.mean(1).numpy() if topk else flat.max(1).values.numpy()
    ia = metrics.image_auroc(s, labels); pa = metrics.pixel_auroc(A.numpy(), masks)
    per = {t: round(metrics.image_auroc(s[(types == t) | (types == "good")], labels[(types == t) | (types == "good")]), 3) for t in sorted(set(types) - {"good"})}
    print(f"{name:34s} img {ia:.3f} pix {pa:.3f} {per}", flush=True)
L = len(raw) // 2
ev("alignment only", [1] * L + [0] * L)
ev("normality only", [0] * L + [1] * L)
ev("both equal", [1] * 2 * L)
ev("both, normality x2", [1] * L + [2] * L)
ev("align + normality deep2", [1] * L + [0, 1, 1])
ev("align deep2 + normality deep2", [0, 1, 1, 0, 1, 1])
ev("both equal, max", [1] * 2 * L, topk=0)
ev("both equal, sigma 2", [1] * 2 * L, sigma=2)
ev("both equal, sigma 8", [1] * 2 * L, sigma=8)
ev("both equal, top 0.1%", [1] * 2 * L, topk=0.001)
