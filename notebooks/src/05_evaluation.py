# %% [markdown]
# # 05 · Evaluation: metrics, thresholds, failures and baselines, on a part where the method errs
#
# **What you will learn**
# - what image AUROC, pixel AUROC, AUPRO and F1-max each measure, and what chance scores on each;
# - how the deployed threshold is calibrated from good images alone, and what it costs against the F1-optimal one;
# - where a real model fails: per defect type, the hardest defects and the likeliest false alarms;
# - how HLGFA stands among the other families of detectors (memory bank, Gaussian, reconstruction), on the same
#   frozen features.
#
# **Prerequisites:** lesson 00 (fit, score, threshold); lessons 01-04 help but are not needed. Python, NumPy. Three
# words of the first printout are taught in lesson 07 and needed here only by name: the *normality part* (a Gaussian
# of the good features at each position, whose map is fused with the alignment map), the *map scale* (how each map is
# normalised before the fusion) and *cross-fitted* scores (extra heads, each trained without a group of training
# images, that score those images, so the threshold rests on more good scores than the few held out).
# **Duration:** about 30 min to read; 2 to 4 min to run on a 2-core CPU in full mode.
#
# **The part: MVTec 3D-AD *tire*.** On bottle every variant of this method scores an image AUROC of 1.000, so
# thresholds, failures and rankings have nothing to show. A dark tyre on a dark background, with small cuts, holes
# and specks, is where HLGFA-lite errs: the numbers below differ from 1, and the failures are real. Set
# `CATEGORY = "bottle"` in the cell that sets it to see the same lesson on the easy part.
#
# | metric | question it answers | `hlgfa_lite.metrics` |
# |---|---|---|
# | image AUROC | does a defective image score higher than a good one? (probability over all pairs) | `image_auroc` |
# | pixel AUROC | does a defect pixel score higher than a normal pixel? (all pixels pooled) | `pixel_auroc` |
# | AUPRO (FPR ≤ 0.3) | are *all* defects found, small ones as much as large ones? | `aupro`, `pro_curve` |
# | image F1-max | the best F1 over all thresholds (needs labelled defects to pick it) | `f1_max` |
#
# Lessons: 00 quickstart · 01 features · 02 priors · 03 alignment · 04 augmentation · **05 evaluation** ·
# 06 all of MVTec AD · 07 beyond bottle

# %% [setup]

# %% [markdown]
# ## 1. The model and the data
#
# The model is a checkpoint bundled with the package: the `lite` preset (the library's default: the abstract's
# alignment plus the normality term of lesson 07, see the printout) fitted with seed 0 on the good training images
# of the category, a tenth of them held out to calibrate (the printout says how many). It ships inside the package, so it is there on Colab too, without a clone. Evaluating
# the default, not a teaching variant, means the numbers below are the ones a user of `hlgfa-lite fit` gets.
#
# The data: the category's full test set if this machine has it (`HLGFA_DATA`, or the project's shared data
# folder next to the clone), otherwise the bundled sample of it. FAST mode always uses the sample.

# %%
import json
import torch.nn.functional as F
from hlgfa_lite import HLGFA, preset, fit, load, load_image, train_image_paths
from hlgfa_lite.evaluation import evaluate, evaluate_samples
from hlgfa_lite import metrics
from hlgfa_lite.assets import bundled_checkpoint, sample_dir
from hlgfa_lite.tools.checkpoint import read_metadata
from hlgfa_lite.tools.visualize import as_numpy, overlay, outline, panel_figure, to_uint8_image

CATEGORY = "tire"  # "tire" (MVTec 3D-AD, where the method errs) or "bottle" (MVTec AD, where it does not)
SHARED = {"tire": "mvtec3d_tire/tire", "bottle": "mvtec_bottle/bottle"}
CHECKPOINT = bundled_checkpoint(f"{CATEGORY}_lite")
CATEGORY_SAMPLE = sample_dir(CATEGORY)
candidates = [os.environ.get("HLGFA_DATA")] + ([ROOT.parent / "shared" / "data" / SHARED[CATEGORY]] if ROOT else [])
FULL_DATA = next((Path(c) for c in candidates if c and (Path(c) / "test").is_dir()), None)
DATA = CATEGORY_SAMPLE if FAST or FULL_DATA is None else FULL_DATA

model = load(CHECKPOINT, device=DEVICE)
cfg = model.cfg
fit_record = read_metadata(CHECKPOINT).get("fit", {})  # what the fit did: steps taken, images, seconds
print(f"checkpoint {CHECKPOINT.name}: backbone {cfg.backbone}, {fit_record.get('steps', cfg.steps)} head steps on "
      f"{fit_record.get('n_train', '?')} good images ({fit_record.get('n_holdout', '?')} more held out to calibrate), "
      f"seed {cfg.seed}, "
      f"normality term {cfg.normality!r} (weight {cfg.normality_weight} in the score, {model.map_share} in the map), "
      f"map scale {cfg.map_scale!r}, "
      f"thresholds from {model.calibration.n_images} good scores (held-out images, and cross-fitted ones when few "
      f"were held out); on {DEVICE}")
print("test data:", f"the bundled {CATEGORY} sample" if DATA == CATEGORY_SAMPLE else f"the full {CATEGORY} test set")

# %%
ev = evaluate(model, DATA, progress=False)
labels, scores, maps, masks = ev.labels, ev.scores, ev.maps, ev.masks  # NumPy arrays on the CPU
print(f"{len(labels)} test images: {(labels == 0).sum()} good, {(labels == 1).sum()} defective")
for key, value in ev.metrics.items():
    print(f"  {key:<14} {value:.4f}" if isinstance(value, float) else f"  {key:<14} {value}")

# %% [markdown]
# These numbers come from the same function as the command line (`hlgfa-lite evaluate`) and the benchmarks. When
# this run used the full test set, they must agree with the metrics stored next to the checkpoint (made by
# `hlgfa-lite evaluate` when the checkpoint was fitted; its `README.md` has the commands); the next cell checks it.
# (`ms_per_image` depends on the machine and its load, so it is not compared.)

# %%
stored = CHECKPOINT.parent / f"{CHECKPOINT.name}_metrics.json"
if DATA == FULL_DATA and stored.is_file():
    reference = json.loads(stored.read_text())
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max"):
        print(f"{key:<14} this run {ev.metrics[key]:.4f}   stored {reference[key]:.4f}")
        assert abs(ev.metrics[key] - reference[key]) < 2e-3, f"{key} disagrees with {stored.name}"
    print("agrees with", f"hlgfa_lite/assets/checkpoints/{stored.name}")
else:
    print("not the full test set: nothing stored to compare with")
print("every benchmark number, with its command: benchmarks/RESULTS.md")

# %% [markdown]
# ## 2. What chance scores: a random model
#
# Before reading any number, know what a detector that knows nothing gets. A *random model* gives every image a
# random score and every pixel a random value. Its image and pixel AUROC sit near 0.5 (a coin flip on every pair),
# but its AUPRO does not: at an FPR of at most 0.3 a random map covers about 15 % of each region on average, so
# chance AUPRO is about 0.15 (the area under PRO = FPR from 0 to 0.3, divided by 0.3). Anything a method claims is
# measured against these, not against 0. The spread over 20 random models also tells you how much a metric moves
# by luck alone on a test set this small.

# %%
rng = np.random.default_rng(0)
chance = {"image_auroc": [], "pixel_auroc": [], "pixel_aupro": []}
for _ in range(20):
    random_maps = rng.random(maps.shape, dtype=np.float32)
    chance["image_auroc"].append(metrics.image_auroc(rng.random(len(labels)), labels))
    chance["pixel_auroc"].append(metrics.pixel_auroc(random_maps, masks))
    chance["pixel_aupro"].append(metrics.aupro(random_maps, masks))
print(f"{'':<14}{'random model (20 draws)':>26}{'HLGFA-lite':>12}")
for key, values in chance.items():
    print(f"{key:<14}{np.mean(values):>16.3f} ± {np.std(values):.3f}{ev.metrics[key]:>16.3f}")
fpr_limit = 0.3  # a uniform random map: PRO(FPR) = FPR, so AUPRO = (limit^2 / 2) / limit = limit / 2
print(f"chance AUPRO in theory: {fpr_limit / 2:.2f}")

# %% [markdown]
# ## 3. Image AUROC and each image's score
#
# Sweep a threshold $t$ over the scores: the true-positive rate (defective images above $t$) against the
# false-positive rate (good images above $t$) traces the ROC curve; its area is the probability that a random
# defective image scores higher than a random good one. It needs no threshold, which is its strength and its limit:
# a deployed system must still choose one (section 6). An AUROC hides *which* images overlap, so look at the
# scores themselves too: one dot per test image, by type, and the two histograms.

# %%
from sklearn.metrics import roc_curve

fpr, tpr, _ = roc_curve(labels, scores)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
axes[0].plot(fpr, tpr)
axes[0].plot([0, 1], [0, 1], "k:", linewidth=0.6, label="a random model")
axes[0].set_xlabel("false-positive rate (good images flagged)")
axes[0].set_ylabel("true-positive rate (defects flagged)")
axes[0].set_title(f"image ROC, AUROC {ev.metrics['image_auroc']:.3f}")
axes[0].legend(fontsize=7, loc="lower right")
types = sorted({s.defect_type for s in ev.samples}, key=lambda t: (t != "good", t))
for i, t in enumerate(types):
    chosen = np.array([s.defect_type == t for s in ev.samples])
    axes[1].scatter(scores[chosen], np.full(chosen.sum(), i) + rng.uniform(-0.15, 0.15, chosen.sum()), s=10)
axes[1].set_yticks(range(len(types)), types)
axes[1].set_xlabel("image score (one dot per test image)")
bins = np.linspace(scores.min(), scores.max(), 25)
axes[2].hist(scores[labels == 0], bins=bins, alpha=0.6, label="good")
axes[2].hist(scores[labels == 1], bins=bins, alpha=0.6, label="defective")
axes[2].set_xlabel("image score")
axes[2].set_ylabel("images")
for ax in axes[1:]:
    ax.axvline(model.threshold(), color="k", linestyle="--", linewidth=0.8, label="calibrated threshold")
axes[2].legend(fontsize=7, loc="upper right")
fig.tight_layout()
save_figure(fig, "05_image_roc.png")
plt.show()
overlap = int((scores[labels == 1] <= scores[labels == 0].max()).sum())
print(f"{overlap} of {(labels == 1).sum()} defective images score at or below the highest good score "
      f"({scores[labels == 0].max():.2f}): " + ("no threshold separates the two sets" if overlap else
                                              "some threshold separates the two sets perfectly"))

# %% [markdown]
# ## 4. Pixel AUROC and PRO: finding the defect, not just the image
#
# **Pixel AUROC** pools every pixel of every test image: defect pixels against normal ones. Large defects own most
# defect pixels, so a map that finds the big breaks and misses every small speck still scores high.
#
# **PRO** (per-region overlap) fixes that: each connected defect region counts equally, however small. For a
# threshold $t$ on the map $A$, with $R$ regions in all the masks,
#
# $$\mathrm{PRO}(t) = \frac{1}{R}\sum_{r} \frac{|\{u \in r : A(u) > t\}|}{|r|}, \qquad
#   \mathrm{FPR}(t) = \frac{|\{u \text{ normal} : A(u) > t\}|}{|\{u \text{ normal}\}|}$$
#
# and **AUPRO** is the area under PRO as a function of FPR, from 0 to 0.3, divided by 0.3 (a perfect map scores 1).
# The limit 0.3 keeps only thresholds at which at most 30 % of normal pixels light up.

# %%
fpr_px, pro = metrics.pro_curve(maps, masks)
inside = fpr_px <= 0.3
from scipy import ndimage

n_regions = sum(ndimage.label(m, structure=metrics.EIGHT_CONNECTED)[1] for m in masks)
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(fpr_px, pro, color="C0")
ax.fill_between(fpr_px[inside], pro[inside], alpha=0.3, color="C0", label=f"AUPRO@0.3 = {ev.metrics['pixel_aupro']:.3f}")
ax.axvline(0.3, color="k", linestyle=":", linewidth=0.8)
ax.set_xlabel("FPR over normal pixels")
ax.set_ylabel(f"PRO (mean overlap of {n_regions} regions)")
ax.legend(loc="lower right")
save_figure(fig, "05_pro_curve.png")
plt.show()

# %% [markdown]
# Read the curve from the left: at thresholds where almost no normal pixel lights up (FPR near 0), how much of each
# defect region is already covered? The shaded area up to FPR 0.3 is AUPRO. A curve that rises only late means the
# small regions are found only once many normal pixels light up with them.

# %% [markdown]
# ### Try it: what a region overlap is
# Pick a defective image and a pixel threshold. Each connected defect region gets its own colour and its overlap
# $|\{u \in r: A(u) > t\}| / |r|$; the FPR is over the normal pixels of *all* test images at that threshold.

# %%
import ipywidgets as widgets

defective = {f"{s.defect_type}/{s.path.name}": i for i, s in enumerate(ev.samples) if s.label}
normal_values = np.sort(maps[~masks])
cal = model.calibration


def region_figure(name: str, threshold: float):
    index = defective[name]
    regions, count = ndimage.label(masks[index], structure=metrics.EIGHT_CONNECTED)
    above = maps[index] > threshold
    fpr_at = 1 - np.searchsorted(normal_values, threshold, side="right") / normal_values.size
    image = F.interpolate(load_image(ev.samples[index].path)[None], size=maps.shape[-2:], mode="bilinear",
                          antialias=True)[0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].imshow(outline(overlay(image, maps[index], cal.map_vmin, cal.map_vmax), masks[index]))
    axes[0].set_title(f"{name}: map (fixed scale), mask outlined", fontsize=8)
    axes[1].imshow(regions, cmap="tab10", vmin=0, vmax=10, interpolation="nearest")
    overlaps = [(above & (regions == r)).sum() / (regions == r).sum() for r in range(1, count + 1)]
    axes[1].set_title(f"{count} region(s): overlap " + ", ".join(f"{o:.2f}" for o in overlaps), fontsize=8)
    axes[2].imshow(above, cmap="gray")
    axes[2].contour(masks[index], levels=[0.5], colors="red", linewidths=0.8)
    axes[2].set_title(f"A > {threshold:.2f}: FPR on normal pixels {fpr_at:.3f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


first_defect = next(iter(defective))
fig = region_figure(first_defect, cal.pixel_threshold)
save_figure(fig, "05_regions.png")
plt.show()


def explore_regions(image=first_defect, threshold=cal.pixel_threshold):
    region_figure(image, threshold)
    plt.show()


low, high = float(np.quantile(maps, 0.5)), float(maps.max())
widgets.interact(explore_regions, image=widgets.Dropdown(options=list(defective), value=first_defect),
                 threshold=widgets.FloatSlider(value=float(np.clip(cal.pixel_threshold, low, high)), min=low, max=high,
                                               step=(high - low) / 100, continuous_update=False));

# %% [markdown]
# ## 5. Per defect type
#
# Image AUROC of each defect type against all good images (`Evaluation.per_type`), and the same for pixels.

# %%
good = labels == 0
per_type_pixel = {}
for t in ev.per_type:
    chosen = good | np.array([s.defect_type == t for s in ev.samples])
    per_type_pixel[t] = metrics.pixel_auroc(maps[chosen], masks[chosen])
fig, ax = plt.subplots(figsize=(6, 2.8))
x = np.arange(len(ev.per_type))
bars_image = ax.bar(x - 0.2, list(ev.per_type.values()), 0.4, label="image AUROC")
bars_pixel = ax.bar(x + 0.2, list(per_type_pixel.values()), 0.4, label="pixel AUROC")
ax.bar_label(bars_image, fmt="%.3f", fontsize=7)
ax.bar_label(bars_pixel, fmt="%.3f", fontsize=7)
ax.set_xticks(x, list(ev.per_type))
ax.set_ylim(min(0.5, min(per_type_pixel.values()) - 0.05), 1.05)
ax.legend(fontsize=7, loc="lower right")
plt.show()
for t in ev.per_type:
    print(f"{t:<16} n={sum(s.defect_type == t for s in ev.samples):>3}  image AUROC {ev.per_type[t]:.3f}  "
          f"pixel AUROC {per_type_pixel[t]:.3f}")

# %% [markdown]
# Read each type's two bars together. Its image AUROC says whether its images stand out as wholes, its pixel AUROC
# whether the map finds the defect inside them. A type high in pixels and low in images would be a defect the map
# finds but the image score loses: the top 1 % of a small defect's map can be no brighter than the top 1 % of a good
# tyre's glints and edges. Look in the printout whether such a type exists here, or whether a type's two numbers are
# both low (a defect the map misses as well); section 7 shows the defects the image score ranks lowest.

# %% [markdown]
# ## 6. F1 and choosing the threshold
#
# AUROC ranks; a line needs a yes or no. Two ways to pick the image threshold:
#
# * **calibrated** (what `hlgfa_lite` deploys): from *good* images the head never trained on (held-out images, and
#   with fewer than 8 held out also cross-fitted scores of the training images: three heads, each trained without a
#   third of them). With $x_i = \log s_i$ ($n$ scores, mean $\bar x$, std $s_x$) and a target false-alarm rate $a$,
#   $t_{anomalous} = e^{\bar x + k\,s_x}$, where $k$ is the one-sided tolerance factor: with probability $g$
#   (`confidence`) at most $a$ of good parts score above it. $k$ grows when $n$ is small (the first line the next
#   cell prints), which is the margin few images need; $e^{\bar x + z_{1-a} s_x}$, the plain quantile estimate, is
#   the lower edge of the **borderline** band. No defect is needed, so it works on day one.
#   `benchmarks/CALIBRATION.md` measures the false-alarm and detection rates it gives on unseen bottles.
# * **F1-optimal**: the threshold that maximises $F_1 = 2PR/(P+R)$ on a labelled test set. It is the best *possible*
#   F1 ("F1-max"), but it peeks at the test labels: an optimistic number, not a deployable threshold.

# %%
from sklearn.metrics import precision_recall_curve
from hlgfa_lite.calibration import tolerance_factor

from scipy.stats import norm

print(f"tolerance factor k at this checkpoint's a = {cal.target_fpr:g}, g = {cal.confidence:g}: " + ", ".join(
    f"n = {n}: {tolerance_factor(n, cal.target_fpr, cal.confidence):.1f}" for n in (5, 10, 20, 100))
      + f"; the plain quantile z = {norm.ppf(1 - cal.target_fpr):.1f}")
print(f"this checkpoint: n = {cal.n_images}, target {cal.target_fpr:g}, confidence {cal.confidence:g}; "
      f"borderline above {cal.borderline():.2f}, anomalous above {model.threshold():.2f}")
f1_best, t_best = metrics.f1_max(scores, labels)
precision, recall, thresholds = precision_recall_curve(labels, scores)
f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)


def confusion(threshold: float) -> dict:
    flagged = scores >= threshold
    return {"defects caught": int((flagged & (labels == 1)).sum()), "defects missed": int((~flagged & (labels == 1)).sum()),
            "good flagged": int((flagged & (labels == 0)).sum()), "good passed": int((~flagged & (labels == 0)).sum())}


def threshold_figure(sensitivity: float = 1.0):
    t_cal = model.threshold(sensitivity)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(thresholds, f1[:-1], label="F1")
    ax.plot(thresholds, precision[:-1], label="precision", alpha=0.6)
    ax.plot(thresholds, recall[:-1], label="recall", alpha=0.6)
    ax.axvline(t_best, color="C3", linestyle="--", label=f"F1-max {f1_best:.3f} at {t_best:.2f}")
    ax.axvline(t_cal, color="k", linestyle="--", label=f"calibrated (sensitivity {sensitivity:g}) {t_cal:.2f}")
    ax.set_xlabel("image threshold")
    ax.legend(fontsize=7)
    plt.show()
    print("calibrated:", confusion(t_cal))
    print("F1-optimal:", confusion(t_best))


threshold_figure()
n_defective, n_good = int((labels == 1).sum()), int((labels == 0).sum())
at_one = confusion(model.threshold())
print(f"at sensitivity 1: {at_one['defects caught']} of {n_defective} defective images caught "
      f"({100 * at_one['defects caught'] / n_defective:.0f} %), {at_one['good flagged']} of {n_good} good images "
      f"flagged ({100 * at_one['good flagged'] / n_good:.0f} %, target {100 * cal.target_fpr:g} %); a threshold that "
      f"keeps a {100 * cal.target_fpr:g} % promise flags at least one of {n_good} good images with probability "
      f"{1 - (1 - cal.target_fpr) ** n_good:.2f}")
widgets.interact(threshold_figure, sensitivity=widgets.FloatSlider(value=1.0, min=0.25, max=4, step=0.25,
                                                                   continuous_update=False));

# %% [markdown]
# **Read the lines together.** The calibrated threshold keeps its promise to good parts: it flags about as many good
# images as its target allows (with this few good test images, one flag is within chance: the last number above).
# Where the scores overlap, as on tire, it lets many defective images through, while the F1-optimal threshold
# catches more of them by flagging many good ones (the two printouts above count both, on this run's test set). Both say what the overlap of section 3 said: when most defects score
# within the range of good scores, no threshold can both pass the good and catch the defective. Calibration does
# not rank. It says where, among good scores, to draw the line, and it can do so on day one, without a single
# defect; whether that line catches defects depends on the ranking. Two levers are left: the sensitivity (move the
# slider and watch both counts) trades missed defects for false alarms, and a model that ranks better moves the
# defects away from the good scores (section 8 compares the families, lesson 07 the parts). On bottle
# (`CATEGORY = "bottle"`), where the two sets do not overlap, the same calibration flags every defective image
# (`benchmarks/CALIBRATION.md`).

# %% [markdown]
# ## 7. Failure cases
#
# The defective images with the *lowest* scores (the hardest to catch) and the good images with the *highest*
# scores (the likeliest false alarms). Looking at them teaches more than any average.

# %%
order = np.argsort(scores)
worst_defects = [i for i in order if labels[i] == 1][:3]
worst_good = [i for i in order[::-1] if labels[i] == 0][:2]
rows = []
for i in worst_defects + worst_good:
    image = F.interpolate(load_image(ev.samples[i].path)[None], size=maps.shape[-2:], mode="bilinear", antialias=True)[0]
    verdict = "flagged" if model.is_anomalous(scores[i]) else "passed"
    rows.append({"image": image, "map": maps[i], "mask": masks[i] if labels[i] else None,
                 "title": f"{ev.samples[i].defect_type}/{ev.samples[i].path.name}: score {scores[i]:.2f} ({verdict})"})
fig = panel_figure(rows, cal.map_vmin, cal.map_vmax)
save_figure(fig, "05_failures.png")
plt.show()

# %% [markdown]
# ### A pitfall: the input resolution
#
# HLGFA compares a 512 px and a 256 px view, and the high-res view must hold real detail. Suppose the camera is
# replaced by one with a lower resolution, and its photos are upsampled to 512 px as every input is. The
# upsampled photo has *less* fine detail than the images the model was fitted and calibrated on. **Predict before
# you run the cell:** does the score of a good part go up or down as the resolution drops? And of a defective one?
#
# The same good part and the same defective part, downsized before scoring:

# %%
good_index = next(i for i, s in enumerate(ev.samples) if s.label == 0)
defect_index = max((i for i, s in enumerate(ev.samples) if s.label == 1), key=lambda i: scores[i])  # its clearest defect
side = load_image(ev.samples[good_index].path).shape[-1]
sides = [side] + [round(side * f) for f in (0.75, 0.5, 0.35) if round(side * f) >= 96]


def scores_by_side(index: int) -> list[float]:
    original = load_image(ev.samples[index].path)[None]
    return [model.score_batch(F.interpolate(original, size=(n, n), mode="bilinear", antialias=True) if n != side
                              else original)[1].item() for n in sides]


res_scores = {"good": scores_by_side(good_index), "defective": scores_by_side(defect_index)}
fig, ax = plt.subplots(figsize=(5, 2.8))
for name, values in res_scores.items():
    ax.plot(sides, values, marker="o", label=f"{name} ({ev.samples[good_index if name == 'good' else defect_index].defect_type})")
ax.axhline(model.threshold(), color="k", linestyle="--", label="calibrated threshold")
ax.set_xlabel("side of the image before scoring (px)")
ax.set_ylabel("image score")
ax.invert_xaxis()
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# Commit to your prediction, then show the evidence and open the answer.

# %%
from hlgfa_lite.lessons.exercises import reveal


def resolution_evidence():
    for name, values in res_scores.items():
        print(f"{name:<10}" + ", ".join(f"{n} px: {v:.2f}" for n, v in zip(sides, values)),
              f"(threshold {model.threshold():.2f})")
        change = values[-1] / values[0] - 1
        print(f"  at {sides[-1]} px the {name} score is {change:+.0%} against full size: it "
              + ("rose" if change > 0 else "fell"))


reveal(resolution_evidence)

# %% [markdown]
# <details><summary>Answer</summary>
#
# Two forces pull in opposite directions. With less fine detail the 512 px view looks more like the 256 px view,
# so the two views *agree better* everywhere, on the defect too: the alignment part of the map falls. But features
# blurred further than any training draw (the Gaussians were fitted on the noise-augmented draws, lesson 04, whose
# blur is mild) are unlike anything the normality term saw: that part rises. Which
# one wins depends on the part and the model, and the evidence above says which won here. Either way the threshold
# was calibrated on sharp images and does not move with the camera: if the scores rise, a low-resolution camera
# cries wolf on good parts; if they fall, it hides defects, and a faint one just above the threshold at full
# resolution slips under it.
#
# So fit and calibrate at the resolution your camera delivers, and recalibrate (good images only,
# `training.calibrate_model`) when the camera or its resolution changes.
# </details>

# %% [markdown]
# ## 8. Against a PatchCore-style baseline, on the same features
#
# PatchCore (Roth et al., 2022) keeps a *memory bank* of patch features from the good training images and scores a
# test patch by its distance to the nearest one. `hlgfa_lite.tools.baselines.PatchCoreBaseline` builds it on the **same
# frozen backbone and low-res view**, with the same smoothing, calibration and metrics, so only the method differs.
# The training-free cross-resolution score (`baselines.training_free`, lesson 01) completes the picture.
#
# HLGFA needs no memory bank and no nearest-neighbour search at test time. What it stores is fixed by the backbone,
# not by the number of training images: the head's weights and, larger, the per-position Gaussians of its
# normality term (lesson 07). Whether the bank buys accuracy with its memory is a question of the part: the table
# below answers it for this one, and the line under it says which way and what each stores.

# %%
from hlgfa_lite.tools.baselines import PatchCoreBaseline, training_free

train_paths = train_image_paths(DATA)
patchcore = PatchCoreBaseline(model.cfg, backbone=model.backbone).to(DEVICE)
bank_report = patchcore.fit(train_paths)
print(f"memory bank: {bank_report.bank_size:,} of {bank_report.n_patches:,} training patches "
      f"({patchcore.memory_bank_bytes / 2**20:.1f} MiB), built in {bank_report.feature_seconds + bank_report.coreset_seconds:.0f} s")
ev_patchcore = evaluate_samples(patchcore.score_batch, ev.samples, model.cfg.eval_size, progress=False)
free = training_free(model.cfg, train_paths, device=DEVICE)
ev_free = evaluate_samples(free.score_batch, ev.samples, model.cfg.eval_size, progress=False)

compared = {"HLGFA-lite (checkpoint)" if CHECKPOINT and (CHECKPOINT / "model.json").is_file() else "HLGFA-lite": (ev, model),
            "training-free cross-resolution": (ev_free, free), "PatchCore-style memory bank": (ev_patchcore, patchcore)}
print(f"\n{'method':<32}{'image AUROC':>12}{'pixel AUROC':>12}{'AUPRO':>8}{'F1-max':>8}{'ms/img':>8}  what it stores")
for name, (evaluation, method) in compared.items():
    m = evaluation.metrics
    stores = (f"{patchcore.memory_bank_bytes / 2**20:.1f} MiB bank" if method is patchcore
              else "nothing trained (identity head)" if method is free
              else f"{method.fitted_bytes() / 2**20:.1f} MiB fitted ({method.trainable_parameters():,} head parameters)")
    print(f"{name:<32}{m['image_auroc']:>12.3f}{m['pixel_auroc']:>12.3f}{m['pixel_aupro']:>8.3f}{m['image_f1_max']:>8.3f}"
          f"{m['ms_per_image']:>8.0f}  {stores}")
print("(ms/img: median on this machine, batch 1, under whatever else it is running)")
hlgfa_m, bank_m = ev.metrics, ev_patchcore.metrics
ahead = [k for k in ("image_auroc", "pixel_auroc", "pixel_aupro") if bank_m[k] > hlgfa_m[k]]
print(f"on {CATEGORY}, the memory bank is ahead of HLGFA-lite on " + (", ".join(ahead) if ahead else "no metric")
      + f", for {patchcore.memory_bank_bytes / 2**20:.1f} MiB of bank against HLGFA's {model.fitted_bytes() / 2**20:.1f} MiB "
      f"({model.fitted_bytes('head.') / 2**20:.1f} MiB head, {model.fitted_bytes('normality.') / 2**20:.1f} MiB Gaussians)")

# the same baselines, same data, same settings in benchmarks/results/*.json must give the same numbers
benchmark_runs = []
for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")) if ROOT else []:
    record = json.loads(path.read_text())
    settings = record.get("settings", {})
    for dataset in record.get("datasets", {}).values():
        same_data = (Path(dataset.get("path", "")).name == DATA.name and dataset.get("n_test_images") == len(ev.samples)
                     and dataset.get("n_train_images") == len(train_paths))
        for run in dataset.get("runs", []) if same_data else []:
            config = run.get("config", {})
            same_setup = all(config.get(k) == model.cfg.to_dict()[k] for k in ("backbone", "hr_size", "lr_size", "seed",
                                                                                 "holdout_fraction", "smooth_sigma"))
            if run.get("variant") == "patchcore":
                same_setup &= settings.get("coreset") == "greedy" and settings.get("coreset_fraction") == 0.1
            if same_setup and run.get("variant") in ("training_free", "patchcore"):
                benchmark_runs.append((path.name, run))
mine = {"training_free": ev_free.metrics, "patchcore": ev_patchcore.metrics}
for name, run in benchmark_runs:
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        print(f"{run['variant']:<14} {key:<12} here {mine[run['variant']][key]:.4f}   {name} {run[key]:.4f}")
        assert abs(mine[run["variant"]][key] - run[key]) < 2e-3, f"{run['variant']} {key} disagrees with {name}"
print(f"{len(benchmark_runs)} matching benchmark run(s) agree" if benchmark_runs
      else "no benchmark result on this data and setup to compare with")

# %% [markdown]
# Read the training-free row against the random scores of section 2: is its image AUROC outside their spread (the
# mean plus or minus the spread printed there), or within it? Within it means that, without a trained head, the two
# resolutions of a good part disagree about as much as those of a defective one: the ranking is no better than
# dice. Training the head on good images is what turns cross-resolution disagreement into evidence of a defect.

# %%
def comparison_figure(indices: list[int]):
    fig, axes = plt.subplots(len(indices), len(compared), figsize=(3 * len(compared), 3 * len(indices)), squeeze=False)
    for row, i in enumerate(indices):
        image = F.interpolate(load_image(ev.samples[i].path)[None], size=maps.shape[-2:], mode="bilinear", antialias=True)[0]
        for col, (name, (evaluation, method)) in enumerate(compared.items()):
            c = method.calibration
            picture = overlay(image, evaluation.maps[i], c.map_vmin, c.map_vmax)
            if labels[i]:
                picture = outline(picture, masks[i])
            axes[row, col].imshow(picture)
            axes[row, col].set_title(f"{name}\n{ev.samples[i].defect_type}: {evaluation.scores[i]:.2f}", fontsize=7)
            axes[row, col].axis("off")
    fig.tight_layout()
    return fig


picked = [next(i for i, s in enumerate(ev.samples) if s.defect_type == t) for t in list(ev.per_type)[:3]]
fig = comparison_figure(picked)
save_figure(fig, "05_baseline.png")
plt.show()

# %% [markdown]
# Read each row across: the same defective image under each method, each on its own calibrated colour scale, the
# true defect outlined. A method that lights up the outline and little else localises; one that lights up the
# part's edges and texture everywhere is reporting its normal structure, and its pixel AUROC pays for it.

# %% [markdown]
# ### Where HLGFA sits among anomaly detectors
#
# Every unsupervised detector keeps *some* model of the good images and measures how far a test image is from it;
# the families differ in what they keep. A **reconstruction** model (an autoencoder, a diffusion model) learns to
# redraw good images and flags what it cannot redraw: the abstract sets HLGFA against it ("instead of relying on
# pixel-level reconstruction"). A **memory bank** (PatchCore) keeps good patch features and measures the distance
# to the nearest: accurate, but its memory and search grow with the data. A **Gaussian** model (PaDiM) keeps a mean
# and covariance of the features per position and measures a Mahalanobis distance: cheap, but blind to what one
# Gaussian cannot describe. **Cross-resolution alignment** (HLGFA) keeps a small head that predicts how a good
# image looks at high resolution from its low-resolution view, and flags where the prediction fails. The `lite`
# preset is a hybrid: its map is a weighted mean of an alignment part and a Gaussian part (lesson 07), and
# `model.part_maps` splits it, so each family can be measured on the same features, the same test images and the
# same metrics. No reconstruction model ships with this package, so its row stays empty rather than guessed.

# %%
from hlgfa_lite.scoring import image_scores


def part_scorer(part: str):
    def score(images):
        anomaly_map = model.part_maps(model.inspect(images))[part]
        return anomaly_map, image_scores(anomaly_map, cfg.score_topk)
    return score


families = {"memory bank (PatchCore-style)": ev_patchcore.metrics}
if cfg.normality != "none":
    families["Gaussian (the normality part alone)"] = evaluate_samples(part_scorer("normality"), ev.samples,
                                                                       cfg.eval_size, progress=False).metrics
    families["alignment (the abstract's method alone)"] = evaluate_samples(part_scorer("alignment"), ev.samples,
                                                                           cfg.eval_size, progress=False).metrics
families["HLGFA-lite (both parts)"] = ev.metrics
keeps = {"memory bank (PatchCore-style)": "good patch features", "Gaussian (the normality part alone)":
         "a mean and covariance per position", "alignment (the abstract's method alone)": "a head: low -> high res",
         "HLGFA-lite (both parts)": "a head and the Gaussians", "reconstruction (autoencoder)": "a network that redraws"}
rows = [[name, keeps[name], f"{m['image_auroc']:.3f}", f"{m['pixel_auroc']:.3f}", f"{m['pixel_aupro']:.3f}"]
        for name, m in families.items()] + [["reconstruction (autoencoder)", keeps["reconstruction (autoencoder)"],
                                             "not in this package", "", ""]]
fig, axes = plt.subplots(1, 2, figsize=(14, 3.2), gridspec_kw={"width_ratios": [2.2, 1]})
axes[0].axis("off")
table = axes[0].table(cellText=rows, colLabels=["family", "what training keeps", "image AUROC", "pixel AUROC", "AUPRO"],
                      loc="center", cellLoc="left", colWidths=[0.34, 0.3, 0.12, 0.12, 0.12])
table.auto_set_font_size(False)
table.set_fontsize(8)
table.scale(1, 1.5)
axes[0].set_title(f"the families of detectors, measured on {CATEGORY} with the same frozen features", fontsize=9)
for name, m in families.items():
    axes[1].scatter(m["image_auroc"], m["pixel_auroc"], s=30, label=name)
axes[1].set_xlabel("image AUROC")
axes[1].set_ylabel("pixel AUROC")
axes[1].legend(fontsize=6)
fig.tight_layout()
save_figure(fig, "05_families.png")
plt.show()
for row in rows[:-1]:
    print(f"{row[0]:<42} image {row[2]}  pixel {row[3]}  AUPRO {row[4]}")

# %% [markdown]
# ## 9. Your own data
#
# Put your images in the MVTec layout (masks are only needed to *evaluate*; `fit` needs only good images):
#
# ```
# my_part/train/good/*.png                     defect-free images (a few dozen is a good start)
# my_part/test/good/*.png                      defect-free test images
# my_part/test/<defect>/*.png                  defective test images, if you have any
# my_part/ground_truth/<defect>/<name>_mask.png   their masks (white = defect), paired by name
# ```
#
# Then either the command line,
#
# ```bash
# hlgfa-lite fit my_part --out runs/my_part              # 5 passes, 125-500 steps; --steps N trains exactly N
# hlgfa-lite evaluate runs/my_part my_part               # every metric of this lesson
# hlgfa-lite predict runs/my_part new_images/ --out results   # scores.csv and overlays
# ```
#
# or the cell below: set `HLGFA_MY_DATA=/path/to/my_part` before starting Jupyter (or write the path into the cell).

# %%
MY_DATA = os.environ.get("HLGFA_MY_DATA")  # e.g. "/content/my_part"
if MY_DATA:
    mine = HLGFA(preset("lite", **({"steps": 20, "passes": 0.0} if FAST else {}))).to(DEVICE)  # FAST: 20 steps
    report = fit(mine, train_image_paths(MY_DATA))
    if (Path(MY_DATA) / "test").is_dir():
        mine_ev = evaluate(mine, MY_DATA)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in mine_ev.metrics.items()})
else:
    print("HLGFA_MY_DATA is not set: nothing to fit here (see the cell above)")

# %% [markdown]
# ## 10. All of MVTec AD
#
# The full benchmark, every category and one table next to the paper's means, on a Colab GPU, resumable, with its
# cost estimated before you start, is lesson 06.

# %% [markdown]
# ## Check yourself
#
# Predict first, then open the answer. The cell below holds the evidence: run it, then press **Show the
# evidence** (where widgets are not drawn, call `evidence()`).
#
# 1. A map finds one large defect perfectly and misses three tiny ones in the same test set. Which metric punishes
#    that more, pixel AUROC or AUPRO?
#
#    <details><summary>Answer</summary>
#
#    AUPRO: every region counts equally, so three missed regions of four cost three quarters of PRO, while pixel
#    AUROC barely notices the few pixels of the tiny ones. The cell below builds that toy case.
#    </details>
#
# 2. Why is the F1-max threshold not a threshold you can deploy?
#
#    <details><summary>Answer</summary>
#
#    It is chosen with the test labels, defects included: on new data it is a guess. The calibrated threshold needs
#    only good images.
#    </details>
#
# 3. What does the memory bank cost that the HLGFA head does not, as the training set grows?
#
#    <details><summary>Answer</summary>
#
#    Memory and search time: the bank grows with the number of training patches (its coreset keeps a fixed share),
#    while HLGFA's head and Gaussians have the same size whatever the number of images. On a small set that fixed
#    size can be the larger of the two: the evidence prints both.
#    </details>
#
# 4. Your camera is replaced by one with half the resolution. What must you redo, at least, and what goes wrong if
#    you do not?
#
#    <details><summary>Answer</summary>
#
#    At least the calibration, on good images from the new camera (better: refit). Section 7 measured what happens
#    otherwise: the scores move when detail is lost, the good parts' and the defects' alike (the evidence prints
#    which way here), so the old threshold no longer sits where the new camera's good images end: either good parts
#    get flagged, or faint defects slip under it.
#    </details>

# %%
from hlgfa_lite.lessons.exercises import reveal


def evidence():  # the answers' evidence: runs only when you press the button below
    toy_maps, toy_masks = np.zeros((1, 40, 40)), np.zeros((1, 40, 40), dtype=bool)
    toy_masks[0, 2:22, 2:22] = True  # a large region (400 px)
    for r, c in ((30, 30), (30, 5), (5, 32)):
        toy_masks[0, r:r + 2, c:c + 2] = True  # three tiny regions (4 px each)
    toy_maps[0, 2:22, 2:22] = 1.0  # found: the large one only
    toy_maps[0] += np.random.default_rng(0).uniform(0, 0.5, (40, 40))
    print(f"1. pixel AUROC {metrics.pixel_auroc(toy_maps, toy_masks):.3f}, AUPRO {metrics.aupro(toy_maps, toy_masks):.3f}")
    print(f"3. bank {patchcore.memory_bank_bytes / 2**20:.1f} MiB from {bank_report.n_train} images; "
          f"HLGFA {model.fitted_bytes() / 2**20:.1f} MiB (head and Gaussians) whatever the number of images")
    print("4. scores at full size and smallest size:", {name: (round(v[0], 2), round(v[-1], 2)) for name, v in res_scores.items()},
          f"(threshold {model.threshold():.2f})")


reveal(evidence, run_now=FAST)  # FAST (CI) runs it at once, so a broken evidence cell fails CI

# %% [markdown]
# ## Write this: PRO at one threshold
#
# Compute $\mathrm{PRO}(t) = \frac{1}{R}\sum_r |\{u \in r : A(u) > t\}| / |r|$ by hand: `maps` is $(N, H, W)$, `masks`
# the matching booleans. Find the connected regions of each mask with
# `scipy.ndimage.label(mask, structure=metrics.EIGHT_CONNECTED)`, take the fraction of each region's pixels above
# `threshold`, and average over all regions of all images. `check` compares your value with the library's
# `metrics.pro_curve` at that threshold. Stuck? `solution("pro_at")`.

# %%
from hlgfa_lite.lessons.exercises import check, solution


def pro_at(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    # write this: about six lines
    raise NotImplementedError


check("pro_at", pro_at);

# %% [markdown]
# ## Further research
#
# 1. **Change the part, measure the gap.** Set `CATEGORY = "bottle"` in the cell that sets it and run the lesson
#    again. Which sections stop teaching anything, and how do the gaps between the memory bank and HLGFA-lite in
#    section 8 change?
# 2. **Change the score, measure the ranking.** The image score is the mean of the top 1 % of the map
#    (`cfg.score_topk`). Re-score the test set with `model.cfg.score_topk = 0` (the map's maximum) and with 0.05
#    (`evaluate(model, DATA)` again); watch image AUROC and the failure cases of section 7. Small defects and large
#    ones do not want the same rule.
# 3. **Change the budget, measure the calibration.** Refit a fresh model,
#    `refit = HLGFA(preset("lite")).to(DEVICE)`, with `fit(refit, train_image_paths(DATA), target_fpr=0.05)` (or
#    move the sensitivity slider of section 6) and count the good test images flagged against the defects caught.
#    How many good images would you need in the test set to tell a 1 % false-alarm rate from a 5 % one?
# 4. **Change the mix, measure the map.** Section 8's table splits the map into its alignment and Gaussian parts,
#    and shows which part alone localises the tire's defects better. Does a mix of the two beat the better one? Set
#    `model.cfg = model.cfg.replace(map_normality_weight=None)` (one map for both: the Gaussian part's share of the
#    map becomes the score's, `normality_weight`, 0.6), run `evaluate(model, DATA)` again and compare image AUROC,
#    pixel AUROC and AUPRO with the default's share of 0.35. Then move `normality_weight`. Is there one weight that
#    is best for both finding *which* tyres are defective and *where*? Could a fit choose it from good images alone?
