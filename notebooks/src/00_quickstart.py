# %% [markdown]
# # 00 · Quickstart: from nothing to an anomaly map
#
# **What you will do.** Fit HLGFA-lite on a handful of *defect-free* bottle images, score unseen good and
# defective bottles, and look at the anomaly maps, what they are made of, and the score histogram. No GPU, no
# download of a dataset: the package bundles a small real sample of MVTec AD *bottle* (CC BY-NC-SA 4.0).
#
# **What you will learn**
# - the one idea of HLGFA: a good part looks the same at two resolutions, a defect does not;
# - what `fit` does with good images only, and what `score_batch` returns;
# - why the colour scale and the threshold come from good images, and what "borderline" means.
#
# **Prerequisites:** Python and a first look at PyTorch tensors; nothing about anomaly detection.
# **Duration:** about 15 min to read; under a minute to run on a 2-core CPU (the fit is most of it: section 2 prints
# its phases' seconds).
#
# **The model: the `lite` preset**, the library's default and what `hlgfa-lite fit` trains. Its map has two
# parts: the abstract's *cross-resolution alignment* (below, and lessons 01-04) and a *normality term* that this
# package adds (a Gaussian model of the good features, lesson 07). Section 3 shows the two parts side by side.
#
# **What HLGFA is, in one paragraph.** A frozen ImageNet network looks at the same image twice: at high
# resolution (512 px) and at low resolution (256 px). On a normal part, the two views describe each location in
# nearly the same way. A small trained *alignment head* learns to predict the high-resolution description from the
# low-resolution one, guided by a *structure prior* and a *detail prior* taken from the high-resolution view (its
# blurred, coarse content, and what the blur removed: fine edges and texture; lesson 02).
# Where that prediction fails, something is there that never occurred on a good part: an anomaly. The next
# lessons open each box; this one just runs it.
#
# > "During inference, anomalies are naturally identified as regions where cross-resolution alignment breaks
# > down." — HLGFA abstract (arXiv 2602.09524)
#
# *hlgfa_lite is a reconstruction:* the HLGFA paper publishes only its abstract, so every choice it leaves open is
# ours, and a switch in `hlgfa_lite.config`.
#
# Lessons: **00 quickstart** · 01 features · 02 priors · 03 alignment · 04 augmentation · 05 evaluation ·
# 06 all of MVTec AD · 07 beyond bottle

# %% [setup]

# %% [markdown]
# ## 1. The data: an MVTec-layout folder
#
# ```
# bottle/train/good/*.png                  defect-free images: the only thing training ever sees
# bottle/test/good/*.png                   defect-free test images
# bottle/test/<defect type>/*.png          defective test images
# bottle/ground_truth/<defect type>/*_mask.png   where the defect is (only used to *evaluate*)
# ```
# Your own data works the same way (lesson 05 shows how).

# %%
from hlgfa_lite import HLGFA, preset, fit, load_image, load_test_split, train_image_paths, save
from hlgfa_lite.data import load_mask
from hlgfa_lite.tools.visualize import overlay, outline, panel_figure, to_uint8_image

train_paths = train_image_paths(SAMPLE)
test_samples = load_test_split(SAMPLE)
print(f"{len(train_paths)} good training images; {len(test_samples)} test images:",
      {t: sum(s.defect_type == t for s in test_samples) for t in sorted({s.defect_type for s in test_samples})})

# %%
shown = [s for s in test_samples if s.defect_type == "good"][:1] + \
        [next(s for s in test_samples if s.defect_type == t) for t in ("broken_large", "broken_small", "contamination")]
fig, axes = plt.subplots(1, 5, figsize=(12, 2.6))
axes[0].imshow(to_uint8_image(load_image(train_paths[0])))
axes[0].set_title("train/good\n(all that training sees)")
for ax, sample in zip(axes[1:], shown):
    image = load_image(sample.path)
    picture = to_uint8_image(image)
    ax.imshow(picture)
    if sample.mask_path is not None:  # a contour at the figure's scale: a one-pixel outline vanishes when shrunk
        mask = load_mask(sample.mask_path, tuple(image.shape[-2:])).float().cpu().numpy()
        ax.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
    ax.set_title(f"test/{sample.defect_type}" + ("\n(true defect outlined)" if sample.mask_path else ""))
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. Fit
#
# `fit` does five things: keeps a few good images aside for calibration, computes the frozen backbone's features
# of the training images **once** (the backbone never learns), trains the small alignment head for a number of steps
# that follows the data (five passes over the training images, at least 125 steps, at most 500), fits the normality term's Gaussians on the same features, and calibrates a threshold and a colour scale
# on the held-out good images. With this few held-out images it also trains three short *cross-fitted* heads, each
# without a third of the training images, so that the threshold rests on more than two good scores (section 4).
# The model lives on `DEVICE` (the setup cell's choice: a GPU when there is one). In FAST mode (CI) the head trains
# for only a few steps, so its maps are rougher. Setting `STEPS` fixes the count instead of the data's rule. On the
# 18 training images here the 125-step floor wins, and a set this small trains on batches of 8 images instead of 16
# (`min_batch_size`: a step costs about half as much, and the heads measured scored as well), so it still makes
# dozens of passes, not five (the `fit` line below says how many).
#
# The first line `fit` prints is its plan, said before any work: how much memory the cached features take and
# whether they stay in memory, the steps and images per step, the precision of the head's steps (bfloat16, a 16-bit
# number format that makes each step cheaper, where the processor computes it natively; float32 otherwise), and how
# many *draws* need a 512 px pass. A draw is one version of a training
# image: the image itself or a copy with camera noise added (lesson 04). `fit` caches the features of four draws
# per image (the image and `aug_copies` noisy copies): the normality term's Gaussians are fitted on all four, while
# the head reads only the clean draw and the first noisy copy, so only those need the 512 px view's priors.

# %%
STEPS = 20 if FAST else None  # None: the preset's rule; a number: exactly that many steps
model = HLGFA(preset("lite", **({} if STEPS is None else {"steps": STEPS, "passes": 0.0}))).to(DEVICE)
print(f"backbone {model.cfg.backbone}: frozen; alignment head: {model.trainable_parameters():,} trainable parameters; "
      f"on {DEVICE}")
report = fit(model, train_paths, progress=False)
print(f"trained on {report.n_train} images for {report.steps} steps of {report.batch_size} images "
      f"({report.steps * report.batch_size / report.n_train:.0f} passes, {report.precision}), calibrated on "
      f"{report.n_holdout} held-out good images and {len(report.cross_fit_scores)} cross-fitted scores")
print(f"feature caching {report.cache_seconds:.1f} s, head training {report.train_seconds:.1f} s, "
      f"cross-fitted heads {report.cross_fit_seconds:.1f} s")
print(f"loss: first step {report.losses[0]:.4f}, last step {report.losses[-1]:.4f}")

# %%
fig, ax = plt.subplots(figsize=(5, 2.5))
ax.plot(report.losses)
ax.set_xlabel("step")
ax.set_ylabel("alignment loss (sum over levels of mean 1 - cos)")
ax.set_title("the head learns how the two resolutions of a good bottle relate")
plt.show()

# %% [markdown]
# ## 3. Score unseen images
#
# `model.score_batch(images)` returns one anomaly map (on the 256 px grid) and one score per image.
# The colour scale is **fixed** by calibration (`model.calibration.map_vmin`, `.map_vmax`): the median pixel of the
# held-out good images' maps sits at the bottom (blue), their brightest pixel in the middle, so a good image should
# stay mostly blue, and red means "well above anything seen on the held-out good images". Per-image min-max
# scaling would make every good image look defective, so the library never does it.

# %%
from hlgfa_lite.evaluation import evaluate

evaluation = evaluate(model, SAMPLE, progress=False)
cal = model.calibration
rows = []
first_of_each_type = {}
for i, s in enumerate(evaluation.samples):
    first_of_each_type.setdefault(s.defect_type, i)
for index in [first_of_each_type["good"]] + [i for t, i in first_of_each_type.items() if t != "good"]:
    sample = evaluation.samples[index]
    image = torch.nn.functional.interpolate(load_image(sample.path)[None], size=evaluation.maps.shape[-2:],
                                            mode="bilinear", antialias=True)[0]
    verdict = model.verdict(evaluation.scores[index]).upper()  # NORMAL, BORDERLINE or ANOMALOUS
    rows.append({"image": image, "map": evaluation.maps[index], "mask": evaluation.masks[index] if sample.label else None,
                 "title": f"{sample.defect_type}: score {evaluation.scores[index]:.2f} -> {verdict}"})
fig = panel_figure(rows, cal.map_vmin, cal.map_vmax)
save_figure(fig, "00_overlays.png")
plt.show()

# %% [markdown]
# ### What the map is made of
#
# The `lite` map is a weighted mean of two maps, each on the calibrated scale (`model.part_maps`):
#
# $$A = (1 - w_{map})\,A_{\text{alignment}} + w_{map}\,A_{\text{normality}}, \qquad
#   w_{map} = \texttt{model.map\_share}$$
#
# * the **alignment part** is the abstract's method: $1 - \cos$ between the head's prediction from the 256 px view
#   and the 512 px features, high where the two resolutions stop agreeing;
# * the **normality part** is a Gaussian per position of the low-resolution features, fitted on the good training
#   images: high where a feature is unlike anything seen there (a Mahalanobis distance, as in PaDiM: the distance
#   to the good features' mean at that position, counted in their spread along each direction).
#
# The alignment part finds *what changes between resolutions* (fine cracks, edges); the normality part finds *what
# is unusual at all* (a missing piece, a colour). Lessons 01-04 open the first, lesson 07 the second and why it was
# added. The image score of section 4 reads the same two parts weighed differently, $w$ = `normality_weight` for
# the normality part: it ranks images best when the normality part leads, while the map localises best when the
# alignment part leads (lesson 07 measures both). Below, one defective bottle, each part alone and the map (both
# weights are printed under the figure):

# %%
defect_index = next(i for i, s in enumerate(evaluation.samples) if s.label)
sample = evaluation.samples[defect_index]
image = load_image(sample.path)[None]
parts = model.part_maps(model.inspect(image))  # {"alignment": (1, 256, 256), "normality": (1, 256, 256)} on DEVICE
w_map = model.map_share
shown_maps = {"alignment part": parts["alignment"][0], "normality part": parts["normality"][0],
              f"anomaly map = {1 - w_map:g} x alignment + {w_map:g} x normality": model.score_batch(image)[0][0]}
small = torch.nn.functional.interpolate(image, size=evaluation.maps.shape[-2:], mode="bilinear", antialias=True)[0]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
axes[0].imshow(to_uint8_image(small))
axes[0].set_title(f"{sample.defect_type}", fontsize=8)
for ax, (name, part_map) in zip(axes[1:], shown_maps.items()):
    ax.imshow(outline(overlay(small, part_map.cpu(), cal.map_vmin, cal.map_vmax), evaluation.masks[defect_index]))
    ax.set_title(name, fontsize=8)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
save_figure(fig, "00_parts.png")
plt.show()
print(f"{sample.defect_type}/{sample.path.name}: the map's share w_map = {w_map}, the score's "
      f"normality_weight w = {model.cfg.normality_weight}; peak of each map: "
      + ", ".join(f"{name.split(' =')[0]} {m.max().item():.2f}" for name, m in shown_maps.items()))

# %% [markdown]
# ## 4. The score histogram
#
# One number per image: the mean of the top 1 % of the pixels $u$ of $A' = (1 - w)\,A_{\text{alignment}} + w\,A_{\text{normality}}$
# (`cfg.score_topk`), the score's own mix of the two parts of section 3, $w$ = `normality_weight`. The thresholds come from the
# scores $s_i$ of good images the head never trained on (held-out images; with fewer than 8 of them, also
# cross-fitted scores of the training images), so you never need a defective example to deploy it. With
# $x_i = \log s_i$ (mean $\bar x$, std $s_x$, $n$ scores) and a target false-alarm rate $a$ (`target_fpr`):
#
# $$\text{score} = \operatorname{mean}\big(\text{top } 1\,\%\text{ of } A'(u)\big), \qquad
#   t_{borderline} = e^{\bar x + z_{1-a} s_x}, \qquad t_{anomalous} = e^{\bar x + k(n) s_x}$$
#
# $z_{1-a}$ is the standard normal quantile: the number of standard deviations above the mean that a share $a$ of
# a normal distribution exceeds (the log-scores are treated as normal). $k(n)$ is the one-sided tolerance factor (`calibration.tolerance_factor`): how many standard deviations above the
# mean the threshold must sit so that, with high confidence (`confidence`), at most a share $a$ of good parts lie
# above it, although the mean and the spread were estimated from only $n$ scores. With few images it grows, so the
# threshold keeps its promise. Scores between the two thresholds are **borderline**: within the calibration's own
# uncertainty, worth a look by eye. With a good model the two histograms do not overlap.
#
# The line under the histogram summarises the ranking in two numbers that need no threshold. **Image AUROC** is the
# probability that a random defective image scores above a random good one (1: every defect above every good
# image; one half: a coin toss). **Pixel AUROC** asks the same of pixels: does a defect pixel of the map score above a
# normal one? Lesson 05 opens both, and adds the measures that count small defects as much as large ones.

# %%
labels = evaluation.labels
threshold = model.threshold()
fig, ax = plt.subplots(figsize=(6, 3))
bins = np.linspace(evaluation.scores.min(), evaluation.scores.max(), 20)
ax.hist(evaluation.scores[labels == 0], bins=bins, alpha=0.7, label="good test images")
ax.hist(evaluation.scores[labels == 1], bins=bins, alpha=0.7, label="defective test images")
ax.axvline(model.calibration.borderline(), color="grey", linestyle=":", label="borderline above")
ax.axvline(threshold, color="k", linestyle="--", label=f"anomalous above {threshold:.2f}")
ax.set_xlabel("image score")
ax.set_ylabel("images")
ax.legend()
save_figure(fig, "00_histogram.png")
plt.show()
print(f"on these {len(labels)} test images: image AUROC {evaluation.metrics['image_auroc']:.3f}, "
      f"pixel AUROC {evaluation.metrics['pixel_auroc']:.3f}")
for label, name in ((1, "defective"), (0, "good")):
    verdicts = [model.verdict(s) for s in evaluation.scores[labels == label]]
    print(f"{name}: " + ", ".join(f"{verdicts.count(v)} {v}" for v in ("anomalous", "borderline", "normal")))

# %% [markdown]
# **Why can a good bottle be flagged?** Nothing in training tells the head what a defect looks like, only what the
# good bottles it saw look like, and the thresholds only say how high *good* scores went on a few images. Three
# things push an unseen good bottle up:
#
# - *Few examples.* The head learned from 18 good bottles, so the normal variation it can explain (a brighter
#   reflection, the bottle a little off-centre, a speck of dust on the rim) is narrow; anything outside it scores
#   higher, defect or not.
# - *Calibration scores sit low.* The held-out (and cross-fitted) images come from the same capture session as the
#   training images, so they look more like them than tomorrow's bottles will: on the full bottle data their median
#   score sits clearly below that of unseen good test bottles (`benchmarks/CALIBRATION.md` measures both). The
#   thresholds inherit that optimism; this is why the default target false-alarm rate is 1 %, not 5 %.
# - *A rate, not a promise per bottle.* Even a perfect calibration at 1 % flags one good part in a hundred, and
#   with a handful of calibration scores the estimate of their spread is itself uncertain. That uncertainty is the
#   **borderline** band: a score there says "look at this part", not "defect".
#
# So a good bottle counted above as borderline or anomalous is not a bug: its map (the picker of the next section
# draws any test image's) shows where it differs from the training bottles. More good images, from more than one session, are the cure; the sensitivity
# trades false alarms against missed defects, and lesson 05 §6 shows how to choose it.

# %% [markdown]
# ## 5. Try it: pick an image, move the sensitivity
#
# `model.verdict(score, sensitivity)` divides each threshold's distance above the typical good score by the
# sensitivity: above 1 flags more, below 1 fewer. The overlays of section 3 are the static version; the controls
# below redraw one image's (they need a running kernel).

# %%
import ipywidgets as widgets

names = [f"{s.defect_type}/{s.path.name}" for s in evaluation.samples]


def show(name=names[-1], sensitivity=1.0):
    index = names.index(name)
    sample = evaluation.samples[index]
    image = torch.nn.functional.interpolate(load_image(sample.path)[None], size=evaluation.maps.shape[-2:],
                                            mode="bilinear", antialias=True)[0]
    picture = overlay(image, evaluation.maps[index], cal.map_vmin, cal.map_vmax)
    if sample.label:
        picture = outline(picture, evaluation.masks[index])
    score = evaluation.scores[index]
    verdict = model.verdict(score, sensitivity).upper()
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    axes[0].imshow(to_uint8_image(image))
    axes[1].imshow(picture)
    axes[1].set_title(f"score {score:.2f} vs threshold {model.threshold(sensitivity):.2f}: {verdict}")
    for ax in axes:
        ax.axis("off")
    plt.show()


widgets.interact(show, name=widgets.Dropdown(options=names, value=names[-1]),
                 sensitivity=widgets.FloatSlider(value=1.0, min=0.25, max=4.0, step=0.25, continuous_update=False));

# %% [markdown]
# ## 6. Keep the model
#
# `save` writes the head's weights (safetensors, no pickle) and a `model.json` with the config and calibration;
# `hlgfa_lite.load(folder)` gives back a model that scores identically. The command line does the same:
# `hlgfa-lite fit PATH --out runs/mine`, `hlgfa-lite evaluate runs/mine PATH`, `hlgfa-lite predict runs/mine IMAGES --out results`.

# %%
from hlgfa_lite import load

run_dir = save(model, Path("runs") / "quickstart", overwrite=True)
reloaded = load(run_dir, device=DEVICE)
image = load_image(shown[-1].path)[None]
print("reloaded model scores the same:", torch.allclose(model.score_batch(image)[1], reloaded.score_batch(image)[1]))

# %% [markdown]
# ## Check yourself
#
# Predict first, then open the answer. The cell below holds the evidence: run it, then press **Show the
# evidence** (where widgets are not drawn, call `evidence()`).
#
# 1. Which images did the head train on, and did it ever see a defect?
#
#    <details><summary>Answer</summary>
#
#    Only `train/good` images, minus the few held out for calibration: it never saw a defect. The defective test
#    images are used only to *measure* it.
#    </details>
#
# 2. Why is the colour scale the same for every image, and where does it come from?
#
#    <details><summary>Answer</summary>
#
#    It is fixed at calibration, from the held-out good images: the median good pixel at the bottom, the brightest
#    good pixel in the middle. A per-image min-max scale would stretch every good image's noise into red.
#    </details>
#
# 3. If you raise the sensitivity from 1 to 2, does the threshold go up or down?
#
#    <details><summary>Answer</summary>
#
#    Down: the threshold's distance above the typical good score is divided by the sensitivity, so more images are
#    flagged.
#    </details>

# %%
from hlgfa_lite.lessons.exercises import reveal


def evidence():  # the answers' evidence: runs only when you press the button below
    print("1. training images:", sorted({f"{p.parent.parent.name}/{p.parent.name}" for p in train_paths}),
          f"({report.n_train} trained on, {report.n_holdout} held out)")
    print(f"2. colour scale {cal.map_vmin:.3f} to {cal.map_vmax:.3f}, from the maps of the {report.n_holdout} held-out "
          "good images")
    print(f"3. threshold at sensitivity 1: {model.threshold(1.0):.2f}, at 2: {model.threshold(2.0):.2f} "
          f"(typical good score {cal.good_score_center:.2f})")


reveal(evidence, run_now=FAST)  # FAST (CI) runs it at once, so a broken evidence cell fails CI

# %% [markdown]
# ## Write this: the image score
#
# Section 4's score is the mean of the top 1 % of the values of a map ($A'$). Write it for one map (a 2-D tensor)
# and a fraction `topk` (at least one value counts). `check` compares your function with the library's
# `hlgfa_lite.scoring.image_scores` on random maps. Stuck? `solution("image_score")` prints ours.

# %%
from hlgfa_lite.lessons.exercises import check, solution


def image_score(anomaly_map: torch.Tensor, topk: float) -> float:
    # write this: flatten the map, keep the k = max(1, round(topk * number of values)) largest (torch.topk), average
    raise NotImplementedError


check("image_score", image_score);

# %% [markdown]
# ## Further research
#
# 1. **Change the training length, measure the map.** Set `STEPS = 50` and then `STEPS = 500` in section 2 and
#    run the lesson again: watch the last loss, the scores of the defective bottles, and the verdicts under the
#    histogram. Where does more training stop helping on 18 images?
# 2. **Change the model, measure its parts.** Fit `preset("lite_paper")` instead of `preset("lite")`: the
#    abstract's method alone, with no normality term. Compare the histogram: both may rank these 14 images
#    perfectly (image AUROC 1.0), so measure the gap between the highest good score and the lowest defective one,
#    and explain the difference with the figure of section 3.
# 3. **Change the sensitivity, measure the verdicts.** In section 5, find the smallest sensitivity at which every
#    defective test bottle is still flagged. How many good bottles does it flag?
