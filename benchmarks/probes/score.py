"""Training-free scoring variants on cached features."""
import sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from hlgfa_lite import metrics
from hlgfa_lite.priors import low_pass
torch.set_num_threads(2)
d = torch.load(sys.argv[1], weights_only=False)
labels = d["labels"].numpy(); masks = d["masks"].numpy(); types = np.array(d["types"])
L = len(d["train"]["low"])

def crop_valid(maps, valid):  # maps (N,256,256) on the LR canvas; valid (N,512,512)
    out = []
    v = F.interpolate(valid[:, None].float(), size=maps.shape[-2:], mode="nearest")[:, 0] > 0
    for m, vv in zip(maps, v):
        rows, cols = vv.any(1).nonzero()[:, 0], vv.any(0).nonzero()[:, 0]
        c = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        out.append(F.interpolate(c[None, None], size=(256, 256), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(out)

def level_valid(valid, hw):
    return F.interpolate(valid[:, None].float(), size=hw, mode="area")[:, 0] > 0.99

def gauss_global(tr, te_list, valid_tr, shrink=0.01):
    # tr (N,C,h,w): mean/cov over valid positions
    N, C, h, w = tr.shape
    v = level_valid(valid_tr, (h, w))
    X = tr.permute(0, 2, 3, 1)[v].double()
    mu = X.mean(0); Xc = X - mu
    cov = Xc.T @ Xc / len(X); cov += shrink * torch.trace(cov) / C * torch.eye(C, dtype=cov.dtype)
    P = torch.linalg.inv(cov).float(); mu = mu.float()
    outs = []
    for te in te_list:
        z = te.permute(0, 2, 3, 1) - mu
        outs.append(((z @ P) * z).sum(-1).clamp_min(0).sqrt())
    return outs

def gauss_pos(tr, te_list, shrink=0.01):
    N, C, h, w = tr.shape
    X = tr.permute(2, 3, 0, 1).reshape(h * w, N, C).double()
    mu = X.mean(1, keepdim=True); Xc = X - mu
    cov = Xc.transpose(1, 2) @ Xc / N
    tr_ = cov.diagonal(dim1=1, dim2=2).sum(-1) / C
    cov += (shrink + 0.0) * tr_[:, None, None] * torch.eye(C, dtype=cov.dtype) + 1e-6 * torch.eye(C, dtype=cov.dtype)
    P = torch.linalg.inv(cov).float(); mu = mu.float()
    outs = []
    for te in te_list:
        z = te.permute(2, 3, 0, 1).reshape(h * w, te.shape[0], C) - mu
        m = ((z @ P) * z).sum(-1).clamp_min(0).sqrt()  # (hw, N)
        outs.append(m.T.reshape(te.shape[0], h, w))
    return outs

def pos_mean(tr, te_list):
    mu = tr.mean(0, keepdim=True)
    return [(te - mu).norm(dim=1) for te in te_list]

def xres(low, tgt):
    return 1 - F.cosine_similarity(low, tgt, dim=1, eps=1e-6)

def fuse(level_maps_hold, level_maps_test, weights=None, sigma=4.0):
    outs = []
    for i, (mh, mt) in enumerate(zip(level_maps_hold, level_maps_test)):
        mu, sd = mh.mean(), mh.std()
        z = (mt - mu) / sd
        outs.append((weights[i] if weights else 1) * F.interpolate(z[:, None], size=(256, 256), mode="bilinear", align_corners=False))
    A = torch.stack(outs).mean(0)
    return low_pass(A, sigma)[:, 0]

def evaluate(name, maps, valid_test, topk=0.01):
    maps = crop_valid(maps, valid_test) if not bool(valid_test.all()) else maps
    flat = maps.flatten(1); k = max(1, int(topk * flat.shape[1]))
    scores = flat.topk(k, 1).values.mean(1).numpy() if topk > 0 else flat.max(1).values.numpy()
    ia = metrics.image_auroc(scores, labels); pa = metrics.pixel_auroc(maps.numpy(), masks)
    per = {t: round(metrics.image_auroc(scores[(types == t) | (types == "good")], labels[(types == t) | (types == "good")]), 3) for t in sorted(set(types) - {"good"})}
    print(f"{name:40s} img {ia:.3f}  pix {pa:.3f}  {per}", flush=True)
    return maps, scores

f = lambda split, key: [t.float() for t in d[split][key]]
trL, hoL, teL = f("train", "low"), f("hold", "low"), f("test", "low")
trT, hoT, teT = f("train", "tgt"), f("hold", "tgt"), f("test", "tgt")
vtr, vho, vte = d["train"]["valid"], d["hold"]["valid"], d["test"]["valid"]
res = {}
res["xres"] = ([xres(a, b) for a, b in zip(hoL, hoT)], [xres(a, b) for a, b in zip(teL, teT)])
pm = [pos_mean(trL[i], [hoL[i], teL[i]]) for i in range(L)]; res["posmean"] = ([p[0] for p in pm], [p[1] for p in pm])
gg = [gauss_global(trL[i], [hoL[i], teL[i]], vtr) for i in range(L)]; res["gauss_global_L"] = ([p[0] for p in gg], [p[1] for p in gg])
gT = [gauss_global(trT[i], [hoT[i], teT[i]], vtr) for i in range(L)]; res["gauss_global_T"] = ([p[0] for p in gT], [p[1] for p in gT])
gp = [gauss_pos(trL[i], [hoL[i], teL[i]]) for i in range(L)]; res["gauss_pos_L"] = ([p[0] for p in gp], [p[1] for p in gp])
for k, (h, t) in res.items():
    evaluate(k, fuse(h, t), vte)
    for i in range(L):
        evaluate(f"  {k} level {i}", fuse([h[i]], [t[i]]), vte)
for a, b in [("xres", "gauss_global_L"), ("xres", "gauss_pos_L"), ("gauss_global_L", "gauss_pos_L"), ("xres", "posmean")]:
    evaluate(f"{a}+{b}", fuse(res[a][0] + res[b][0], res[a][1] + res[b][1]), vte)
torch.save(res, sys.argv[1].replace(".pt", "_maps.pt"))
