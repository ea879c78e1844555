import sys, numpy as np, torch, torch.nn.functional as F
sys.argv_backup = sys.argv
exec(open(__import__("pathlib").Path(__file__).with_name("score.py")).read().split("f = lambda split")[0])  # helpers only
f = lambda split, key: [t.float() for t in d[split][key]]
trL, hoL, teL = f("train", "low"), f("hold", "low"), f("test", "low")
vte = d["test"]["valid"]
def neighbour_pool(x, k):  # average each feature with its k x k neighbours (PatchCore's local aggregation)
    return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False) if k > 1 else x
for shrink in [0.01, 0.1, 1.0]:
    h, t = zip(*[gauss_pos(trL[i], [hoL[i], teL[i]], shrink) for i in range(L)])
    evaluate(f"gauss_pos shrink {shrink}", fuse(list(h), list(t)), vte)
for k in [3]:
    tr2, ho2, te2 = [neighbour_pool(x, k) for x in trL], [neighbour_pool(x, k) for x in hoL], [neighbour_pool(x, k) for x in teL]
    h, t = zip(*[gauss_pos(tr2[i], [ho2[i], te2[i]], 0.01) for i in range(L)])
    evaluate(f"gauss_pos pool{k}", fuse(list(h), list(t)), vte)
    evaluate(f"gauss_pos pool{k} w deep", fuse(list(h), list(t), weights=[0.5, 1, 1.5]), vte)
