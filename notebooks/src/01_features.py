# %% [markdown]
# # 01 · Features: one frozen backbone, two resolutions
#
# **What you will learn**
# - what a frozen ImageNet backbone's features are at each level: channels, strides and receptive fields;
# - how the features of a high- and a low-resolution view of one image line up on one grid (the target $T$);
# - how far their disagreement finds defects before anything is trained, level by level and fused.
#
# **Prerequisites**: lesson 00 (what an anomaly map and an image score are); Python, and PyTorch tensors (shapes,
# `torch.nn.functional`). **Duration**: about 15 min to read, under 1 min to run on a 2-core CPU in full mode. Every
# model and tensor goes to `DEVICE` (a GPU when there is one, set by the setup cell); plots bring data back to the CPU.
#
# **Model**: `preset("lite_paper")`, untrained: the abstract's method alone, without the normality term that the
# default `lite` preset adds (lesson 07). Untrained, its head is the identity, so its map is the raw disagreement of
# the two views: exactly what this lesson studies.
#
# HLGFA never looks at pixels directly. It looks at what a frozen ImageNet network "sees" at each location, and
# it looks **twice**: at a high and a low resolution of the same image. This lesson shows those features, their
# receptive fields and strides, and why comparing the two views already finds defects, before anything is trained.
#
# For an image $x$ and a feature level $l$ with stride $s_l$ (the backbone's `phi`, frozen):
#
# $$x_H = \mathrm{resize}(x, 512), \qquad x_L = \mathrm{resize}(x_H, 256)$$
# $$F_H^l = \phi_l(x_H) \in \mathbb{R}^{C_l \times \frac{512}{s_l} \times \frac{512}{s_l}}, \qquad
#   F_L^l = \phi_l(x_L) \in \mathbb{R}^{C_l \times \frac{256}{s_l} \times \frac{256}{s_l}}$$
#
# The high-res grid is exactly twice as fine, so the **target** on the low-res grid is the 2×2 average of the
# high-res features, and the **training-free misalignment** is one minus their cosine similarity:
#
# $$T^l = \mathrm{avgpool}_2(F_H^l), \qquad e^l(u) = 1 - \cos\big(F_L^l(u),\, T^l(u)\big)$$
#
# In code: `hlgfa_lite/backbone.py` (the two views), `hlgfa_lite/priors.py` (`target`), `hlgfa_lite/alignment.py`
# (`misalignment`). An untrained `HLGFA` has an identity head, so `model.inspect(x).level_maps` *are* the $e^l$.
#
# Lessons: 00 quickstart · **01 features** · 02 priors · 03 alignment · 04 augmentation · 05 evaluation ·
# 06 all of MVTec AD · 07 beyond bottle

# %% [setup]

# %% [markdown]
# > Dual-resolution inputs are processed by a shared frozen backbone to extract multi-level features, …
# > — HLGFA abstract
#
# The model below holds that backbone (frozen: no gradient ever changes it) and makes the two views; the table lists
# the levels whose features it extracts from each view.

# %%
import torch.nn.functional as F
from hlgfa_lite import HLGFA, preset, load_image, load_test_split, train_image_paths
from hlgfa_lite.data import load_mask
from hlgfa_lite.tools.visualize import to_uint8_image

model = HLGFA(preset("lite_paper")).to(DEVICE)  # untrained: its head is exactly the identity
cfg = model.cfg
print(f"backbone {cfg.backbone}, frozen; views {cfg.hr_size} px and {cfg.lr_size} px")
print(f"{'level':>5} {'channels':>9} {'stride':>7} {'high-res grid':>14} {'low-res grid':>13}")
for level, (channels, stride) in enumerate(zip(model.backbone.channels, model.backbone.strides), start=1):
    print(f"{level:>5} {channels:>9} {stride:>7} {cfg.hr_size // stride:>11}² {cfg.lr_size // stride:>10}²")

# %% [markdown]
# ## 1. A good and a defective bottle, both views
#
# `model.inspect(images)` runs the whole method and returns every intermediate. We take one good test image and
# one with a small break; the defect mask is used only to outline the break and, in section 4, to tell the feature
# cells on it from the others.

# %%
samples = load_test_split(SAMPLE)
good_sample = next(s for s in samples if s.defect_type == "good")
defect_sample = next(s for s in samples if s.defect_type == "broken_small")
images = torch.stack([load_image(good_sample.path), load_image(defect_sample.path)])  # (2, 3, 512, 512)
defect_mask = load_mask(defect_sample.mask_path, tuple(images.shape[-2:]))
ins = model.inspect(images)
print("high view", tuple(ins.hr_image.shape), "low view", tuple(ins.lr_image.shape))
for level, (fh, fl) in enumerate(zip(ins.high, ins.low), start=1):
    print(f"level {level}: F_H {tuple(fh.shape)}  F_L {tuple(fl.shape)}")


def mask_on(size: int) -> np.ndarray:
    """The defect mask on a square feature grid: a cell counts as defect if any of its pixels is (max-pool)."""
    return F.adaptive_max_pool2d(defect_mask[None, None].float(), size)[0, 0].cpu().numpy() > 0

# %% [markdown]
# ## 2. Receptive fields and strides
#
# One feature vector at level $l$ sums up a patch of the input: its **receptive field**. Deeper levels see larger
# patches on coarser grids (stride 4, 8, 16 px). The *effective* receptive field is what a feature actually
# depends on: the gradient of one feature (summed over channels) with respect to the input pixels. We compute it
# with autograd on the frozen network itself, at the centre of the low-res view, and sum each field up by a radius:
# the half-width of the smallest square around the centre that holds 90 % of the gradient (the cyan box). The white
# box is one cell of that level's grid, its stride wide. The panels show the square root of the gradient, so that
# its faint tails stay visible.

# %%
x = ins.lr_image[1:2].clone().requires_grad_(True)
features = model.features_with_gradients(x)  # the backbone's features with a graph this time (inspect() keeps none)
fields, radii = [], []
centres = []
for feature, stride in zip(features, model.backbone.strides):
    h, w = feature.shape[-2:]
    (grad,) = torch.autograd.grad(feature[0, :, h // 2, w // 2].sum(), x, retain_graph=True)
    field = grad[0].abs().sum(0)  # (256, 256): how much each input pixel moves this one feature
    ys, xs = torch.meshgrid(torch.arange(field.shape[0], device=field.device),
                            torch.arange(field.shape[1], device=field.device), indexing="ij")
    centre = (h // 2 + 0.5) * stride - 0.5  # the input pixel under the centre of that feature's cell
    centres.append(centre)
    # each pixel's ring: its distance to the centre along the larger of the two axes (rings are squares)
    distance = torch.maximum((ys - centre).abs(), (xs - centre).abs()).flatten()
    mass = field.flatten()[distance.argsort()].cumsum(0) / field.sum()  # the share of the field within each ring
    radii.append(int(distance.sort().values[int((mass < 0.9).sum())]))
    fields.append(field.detach().cpu().numpy())

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
axes[0].imshow(to_uint8_image(ins.lr_image[1]))
axes[0].set_title("low view (256 px)")
for ax, field, radius, stride, c, level in zip(axes[1:], fields, radii, model.backbone.strides, centres, (1, 2, 3)):
    ax.imshow(field ** 0.5, cmap="magma")
    ax.add_patch(plt.Rectangle((c - radius, c - radius), 2 * radius, 2 * radius, fill=False, color="cyan", lw=1))
    ax.add_patch(plt.Rectangle((c - stride / 2, c - stride / 2), stride, stride, fill=False, color="white", lw=1))
    ax.set_xlim(c - 72, c + 72)  # a zoom of 144 px around the centre, enough for the fields; the view is 256 px
    ax.set_ylim(c + 72, c - 72)
    ax.set_title(f"level {level}: stride {stride} px (white)\n90 % of the field in ±{radius} px (cyan)", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
save_figure(fig, "01_receptive_fields.png")
plt.show()

# %% [markdown]
# The panels are zoomed on the centre of the 256 px view. The effective field grows from a few pixels (level 1) to
# a good part of the bottle (level 3). In the 512 px view the bottle is twice as large in pixels while the network
# and its fields stay the same, so each high-res feature covers half as much of the *object*: it describes finer
# detail of the same place. That asymmetry is what HLGFA exploits.

# %% [markdown]
# ## 3. What the features look like: PCA to RGB
#
# Each feature vector has $C_l$ numbers (24, 40, 112). To look at them we project all vectors of an image, from
# **both** views, onto the same three principal components and show those as red, green, blue. Same colour means
# similar description. Because one projection serves both views, the colours are comparable across resolutions;
# each image gets its own projection, though, so colours do not carry over from one image to another.

# %%
def pca_rgb(*maps: torch.Tensor) -> list[np.ndarray]:
    """Feature maps (C, h_i, w_i) sharing one PCA basis -> RGB pictures (h_i, w_i, 3) in [0, 1]."""
    vectors = torch.cat([m.flatten(1).T for m in maps])  # (sum of h_i w_i, C)
    centre = vectors.mean(0)
    _, _, rows = torch.linalg.svd(vectors - centre, full_matrices=False)  # exact, so the same image gives the same colours
    basis = rows[:3].T  # (C, 3): the first three principal directions
    basis = basis * basis[basis.abs().argmax(0), range(3)].sign()  # a direction and its opposite: pick one, always
    projected = (vectors - centre) @ basis
    low, high = projected.quantile(0.01, dim=0), projected.quantile(0.99, dim=0)
    pictures, start = [], 0
    for m in maps:
        n = m.shape[1] * m.shape[2]
        rgb = ((projected[start:start + n] - low) / (high - low)).clamp(0, 1)
        pictures.append(rgb.reshape(m.shape[1], m.shape[2], 3).cpu().numpy())
        start += n
    return pictures


def feature_figure(inspection, index: int, level: int, channel: int | None = None, title: str = "", mask=None):
    """Image, F_H, F_L, target T = avgpool_2(F_H) and e = 1 - cos for one image and level (PCA or one channel);
    a defect ``mask`` (the image's size) is outlined on the image (red) and on e (white)."""
    fh, fl = inspection.high[level][index], inspection.low[level][index]
    target = inspection.priors[level].target[index]
    if channel is None:
        pictures = pca_rgb(fh, fl, target)
        kw = [{}] * 3
    else:
        values = [fh[channel].cpu().numpy(), fl[channel].cpu().numpy(), target[channel].cpu().numpy()]
        vmin, vmax = min(v.min() for v in values), max(v.max() for v in values)
        pictures, kw = values, [dict(cmap="viridis", vmin=vmin, vmax=vmax)] * 3
    fig, axes = plt.subplots(1, 5, figsize=(14, 3))
    axes[0].imshow(to_uint8_image(inspection.hr_image[index]))
    if mask is not None:  # a contour drawn at the figure's scale: a one-pixel outline vanishes when shrunk
        axes[0].contour(mask.float().cpu().numpy(), levels=[0.5], colors="red", linewidths=0.8)
    ratio = fh.shape[-1] // fl.shape[-1]
    names = [f"F_H {tuple(fh.shape[-2:])}", f"F_L {tuple(fl.shape[-2:])}", f"T = avgpool{ratio}(F_H)"]
    for ax, picture, name, k in zip(axes[1:4], pictures, names, kw):
        ax.imshow(picture, **k)
        ax.set_title(name + ("" if channel is None else f", channel {channel}"))
    axes[4].imshow(inspection.level_maps[level][index].cpu().numpy(), cmap="jet", vmin=0, vmax=float(
        max(m.max() for m in inspection.level_maps[level]))
    )
    if mask is not None:
        axes[4].contour(mask_on(fl.shape[-1]), levels=[0.5], colors="white", linewidths=0.8)
    axes[4].set_title("e = 1 - cos(F_L, T), 0 to its max")
    axes[0].set_title(title)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


for index, name in ((0, "good"), (1, "broken_small")):
    # list index 1 is level 2: the levels are named 1-3, as the printout above names them; Python lists count from 0
    fig = feature_figure(ins, index, level=1, title=f"{name}, level 2 (stride 8)", mask=defect_mask if index else None)
    if index == 1:
        save_figure(fig, "01_pca_features.png")
    plt.show()

# %% [markdown]
# On the good bottle, $F_H$ (finer), $F_L$ and $T$ show the same rings in the same colours: the two resolutions
# largely agree. On the broken bottle, compare the place of the fracture (outlined on the photo and on $e$) in $T$
# and in $F_L$: at high resolution the network resolves sharp broken glass, at low resolution it sees a smaller,
# blurrier patch and describes it differently. Yet the $e$ panels are speckled on *both* bottles: edges and
# reflections also look different at two resolutions, and on one picture the cells inside the outline are among
# the bright ones, not the only ones. Whether $e$ is higher on the defect *on average* is a question for numbers:
# section 4 answers it.
#
# ### Try it
# Level, PCA or a single channel, the image, and the **resolution pair**: other pairs build a new (untrained)
# model with the same frozen weights, so the first change of pair takes a few seconds.

# %%
import ipywidgets as widgets

PAIRS = {"512 / 256 (default)": (512, 256), "256 / 128": (256, 128), "384 / 192": (384, 192),
         "768 / 256 (ratio 3)": (768, 256), "1024 / 256 (ratio 4)": (1024, 256)}
models = {(cfg.hr_size, cfg.lr_size): model}
inspections = {(cfg.hr_size, cfg.lr_size): ins}
picker = {f"{s.defect_type}/{s.path.name}": s for s in samples}


def explore(image="broken_small/" + defect_sample.path.name, pair="512 / 256 (default)", level=2, pca=True,
            channel=0):
    sizes = PAIRS[pair]
    if sizes not in models:
        models[sizes] = HLGFA(preset("lite_paper", hr_size=sizes[0], lr_size=sizes[1])).to(DEVICE)
    inspection = models[sizes].inspect(load_image(picker[image].path)[None])
    channels = inspection.high[level - 1].shape[1]
    fig = feature_figure(inspection, 0, level - 1, None if pca else min(channel, channels - 1),
                         title=f"{image}\n{pair}, level {level}")
    plt.show()


widgets.interact(explore, image=widgets.Dropdown(options=list(picker), value="broken_small/" + defect_sample.path.name),
                 pair=widgets.Dropdown(options=list(PAIRS)), level=widgets.IntSlider(2, 1, 3),
                 pca=widgets.Checkbox(True, description="PCA to RGB (else one channel)"),
                 channel=widgets.IntSlider(0, 0, max(model.backbone.channels) - 1, continuous_update=False));

# %% [markdown]
# ## 4. Alike on normal parts, different on defects: in numbers
#
# The per-location cosine similarity $\cos(F_L(u), T(u))$, split into locations on the good image, locations of
# the defective image outside its mask, and locations inside the defect.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
for level, ax in enumerate(axes):
    e = ins.level_maps[level].cpu().numpy()  # (2, h, w) = 1 - cos, on the CPU for NumPy and the plot
    inside = mask_on(e.shape[-1])
    groups = {"good image": e[0].flatten(), "defective image, outside": e[1][~inside],
              "defective image, inside defect": e[1][inside]}
    bins = np.linspace(0, max(g.max() for g in groups.values() if g.size), 40)
    for name, values in groups.items():
        if values.size:
            ax.hist(values, bins=bins, density=True, alpha=0.5, label=name)
    ax.set_title(f"level {level + 1}: e = 1 - cos(F_L, T)")
    ax.set_yticks([])
    print(f"level {level + 1}: mean e on the good image {groups['good image'].mean():.3f}, "
          f"inside the defect {groups['defective image, inside defect'].mean():.3f}")
axes[0].legend(fontsize=7)
plt.show()

# %% [markdown]
# ## 5. The training-free anomaly map
#
# Fuse the levels: normalise each $e^l$ by its mean and spread on good images (levels differ in scale), upsample to
# 256 px, average, smooth (`hlgfa_lite/scoring.py`). The statistics and the fixed colour scale come from good
# images only: `training.calibrate_model` on the 20 good training images (6 in FAST mode). No head is trained: this
# is the raw cross-resolution score, the starting point the learned head improves on. The last line prints its
# **image AUROC**: the probability that a defective test image scores higher than a good one (1.0 = every defective
# image above every good one; a coin flip gets one half; lesson 05 explains it in full), and its **pixel AUROC**, the
# same question asked of pixels (defect pixels against normal ones, below).

# %%
from hlgfa_lite.evaluation import evaluate
from hlgfa_lite.training import calibrate_model, load_images
from hlgfa_lite.tools.visualize import panel_figure

n_calibration = 6 if FAST else 20
calibrate_model(model, load_images(train_image_paths(SAMPLE)[:n_calibration], cfg.hr_size))
evaluation = evaluate(model, SAMPLE, progress=False)
cal = model.calibration
rows = []
for wanted in ("good", "broken_large", "broken_small", "contamination"):
    index = next(i for i, s in enumerate(evaluation.samples) if s.defect_type == wanted)
    image = F.interpolate(load_image(evaluation.samples[index].path)[None], size=evaluation.maps.shape[-2:],
                          mode="bilinear", antialias=True)[0]
    rows.append({"image": image, "map": evaluation.maps[index], "title": f"{wanted}: score {evaluation.scores[index]:.2f}",
                 "mask": evaluation.masks[index] if wanted != "good" else None})
fig = panel_figure(rows, cal.map_vmin, cal.map_vmax)
save_figure(fig, "01_training_free_maps.png")
plt.show()
print(f"training-free, on the {len(evaluation.samples)} sample test images: image AUROC "
      f"{evaluation.metrics['image_auroc']:.3f}, pixel AUROC {evaluation.metrics['pixel_auroc']:.3f}")

# %% [markdown]
# ### Does fusing levels matter?
# The same test images, each level's map alone versus the fused map, by **pixel AUROC**: the probability that a
# random defect pixel's map value is higher than a random normal pixel's (1.0 = every defect pixel above every
# normal one), the image AUROC's question asked of pixels. Each
# level alone goes through the same normalisation, upsampling and smoothing as the fused map (`model.fuse`, given
# one level), so only the fusion differs.

# %%
from hlgfa_lite import metrics

level_maps = [[] for _ in model.backbone.channels]
for sample in evaluation.samples:
    inspection = model.inspect(load_image(sample.path)[None])
    for level, e in enumerate(inspection.level_maps):
        alone = model.fuse([e], first=level)  # (1, 256, 256): level `level` normalised, upsampled, smoothed
        level_maps[level].append(F.interpolate(alone[None], size=evaluation.maps.shape[-2:], mode="bilinear")[0, 0].cpu().numpy())
per_level = {f"level {l + 1} alone": metrics.pixel_auroc(np.stack(m), evaluation.masks) for l, m in enumerate(level_maps)}
per_level["fused (levels 1-3)"] = evaluation.metrics["pixel_auroc"]
for name, value in per_level.items():
    print(f"{name:<20} pixel AUROC {value:.3f}")

# %% [markdown]
# The training-free map already points at defects, but it also reacts to normal fine structure that simply looks
# different at two resolutions (edges, reflections): normal images are not perfectly consistent across scales.
# Lesson 03 trains a head that learns *how* normal parts change between the resolutions, so that only what never
# occurred on a good part stays bright.
#
# ## Check yourself
#
# Predict first, then open the answer. The cell below holds the evidence: run it, then press **Show the
# evidence** (where widgets are not drawn, call `evidence()`).
#
# 1. With views of 384 and 192 px (the widget's third pair), what are level 2's two grids, and why is the low-res
#    one still exactly half the high-res one?
#
#    <details><summary>Answer</summary>
#
#    Stride 8 on both views: 192 / 8 = 24, so 24 × 24, and 384 / 8 = 48, so 48 × 48. The same network (the same
#    strides) on a view twice as large gives a grid twice as fine, whatever the sizes: every low-res cell covers
#    exactly a 2 × 2 block of high-res cells.
#    </details>
#
# 2. Why can the target $T$ be compared with $F_L$ location by location?
#
#    <details><summary>Answer</summary>
#
#    $\mathrm{avgpool}_2$ brings $F_H$ onto the low-res grid: the same channels (one frozen network) and the same
#    grid, so $\cos(F_L(u), T(u))$ is defined at every cell $u$.
#    </details>
#
# 3. Is the misalignment inside the defect higher than on the good image, at every level?
#
#    <details><summary>Answer</summary>
#
#    Measured below, per level. Expect it higher on the defect at every level, by different margins. A level's
#    margin on this one image does not predict its pixel AUROC over the test set (compare them): the margin is a
#    mean over one defect, while the AUROC asks whether defect pixels rise above *all* normal ones, the edges and
#    reflections of every good image included.
#    </details>

# %%
from hlgfa_lite.lessons.exercises import reveal


def evidence():  # the answers' evidence: runs only when you press the button below
    pair = HLGFA(preset("lite_paper", hr_size=384, lr_size=192)).to(DEVICE).inspect(images[:1])  # same weights
    print(f"1. level 2 at 384 / 192 px: low-res grid {pair.low[1].shape[-1]}², high-res grid {pair.high[1].shape[-1]}²")
    print("2. target and F_L shapes agree at every level:", all(p.target.shape == f.shape for p, f in zip(ins.priors, ins.low)))
    for level, e in enumerate(ins.level_maps):
        inside = mask_on(e.shape[-1])
        print(f"3. level {level + 1}: mean e inside the defect {e[1][inside].mean():.3f} vs on the good image {e[0].mean():.3f}")


reveal(evidence, run_now=FAST)  # FAST (CI) runs it at once, so a broken evidence cell fails CI

# %% [markdown]
# ## Write this: the training-free misalignment
#
# For one level of one image: `low` is $F_L$, shape $(C, h, w)$, and `high` is $F_H$, shape $(C, 2h, 2w)$. Return
# $e = 1 - \cos(F_L, \mathrm{avgpool}_2(F_H))$ per location, shape $(h, w)$. `check` compares it with the library's
# `priors.target` and `alignment.misalignment` on random features. Stuck? `solution("misalignment")`.

# %%
from hlgfa_lite.lessons.exercises import check, solution


def misalignment(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    # write this: pool the high-res features 2 x 2 (F.avg_pool2d wants a batch dimension), then 1 - cosine over channels
    raise NotImplementedError


check("misalignment", misalignment);


# %% [markdown]
# ## Further research
#
# Open questions: change one knob, re-run the cells after it, and read the number named.
#
# 1. **Resolution pair.** In the cell that builds `model`, build `preset("lite_paper", hr_size=384, lr_size=192)` instead, and
#    compare the pixel AUROC of each level alone and fused ("Does fusing levels matter?"). Which level gains or loses
#    most when the views shrink, and why might a bottle's small breaks need the larger pair?
# 2. **Smoothing.** In the same cell, set `smooth_sigma` to 0 and then to 8 (default 4, in low-res pixels), and read
#    §5's fused pixel AUROC and image AUROC. Does smoothing help localisation, ranking, both or neither?
# 3. **Calibration images.** In §5's cell, set `n_calibration = 3` instead of 20: the levels' good-image statistics
#    now come from three images. How far does the fused pixel AUROC move, and which map in §5's figure changes most?

