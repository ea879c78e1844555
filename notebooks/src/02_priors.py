# %% [markdown]
# # 02 · Priors: structure and detail of the high-resolution features
#
# **What you will learn**
# - how the high-resolution features split into a low-pass *structure* prior and a high-pass *detail* prior, and how
#   the cut-off $\sigma$ divides their energy, level by level;
# - how both priors are brought onto the low-res grid without losing a value (average pooling, pixel-unshuffle);
# - why priors taken from the scored image itself could let a head copy its target, defects included, and what
#   in the library stands in the way.
#
# **Prerequisites**: lesson 01 (the two views, the levels, the target $T$); PyTorch tensors and convolutions.
# **Duration**: about 15 min to read, under 1 min to run on a 2-core CPU in full mode. Every model and tensor goes to
# `DEVICE` (a GPU when there is one); plots bring data back to the CPU.
#
# **Model**: `preset("lite_paper")`, untrained: the abstract's method alone (the normality term of the default `lite`
# preset plays no part in the priors). Nothing is trained here: the priors come from the frozen backbone.
#
# The high-resolution view guides the refinement of the low-resolution one, through two **priors**: a
# low-pass *structure* prior (the smooth layout of the part) and a high-pass *detail* prior (edges, texture, fine
# marks). For one level, with $G_\sigma$ a Gaussian blur over space, channel by channel
# (`hlgfa_lite/priors.py`):
#
# $$S = G_\sigma * F_H \qquad\qquad D = F_H - S \qquad\qquad S + D = F_H \;\text{ exactly}$$
#
# The head works on the low-res grid (twice as coarse, $r = 2$), so both are brought there:
#
# $$S_\downarrow = \mathrm{avgpool}_r(S) \in \mathbb{R}^{C\times h\times w}, \qquad
#   D_\downarrow = \mathrm{pixel\_unshuffle}_r(D) \in \mathbb{R}^{C r^2\times h\times w}, \qquad
#   T = \mathrm{avgpool}_r(F_H)$$
#
# Pooling the smooth $S$ loses little; pixel-unshuffle keeps *every* detail value, stacked into channels. This
# lesson looks at both priors on real features, checks the identities above, and ends with the question every
# careful reader asks: if the priors come from the very image being scored, can the head just copy the answer?
#
# Lessons: 00 quickstart · 01 features · **02 priors** · 03 alignment · 04 augmentation · 05 evaluation ·
# 06 all of MVTec AD · 07 beyond bottle

# %% [setup]

# %%
import torch.nn.functional as F
from hlgfa_lite import HLGFA, preset, load_image, load_test_split
from hlgfa_lite.data import load_mask
from hlgfa_lite.priors import low_pass, split, priors_on_low_grid
from hlgfa_lite.alignment import misalignment
from hlgfa_lite.tools.visualize import outline, to_uint8_image

model = HLGFA(preset("lite_paper")).to(DEVICE)  # no training needed here: the priors come from the frozen backbone
cfg = model.cfg
samples = load_test_split(SAMPLE)
picker = {f"{s.defect_type}/{s.path.name}": s for s in samples}
DEFAULT = next(name for name in picker if name.startswith("broken_large"))


def features_of(name: str):
    """High-res features (per level, (1, C, H, W)) and the defect mask (bool, image size) of a test image."""
    sample = picker[name]
    image = load_image(sample.path)
    mask = load_mask(sample.mask_path, tuple(image.shape[-2:])) if sample.mask_path else torch.zeros(image.shape[-2:], dtype=torch.bool)
    inspection = model.inspect(image[None])
    return inspection, mask


ins, mask = features_of(DEFAULT)
print(f"{DEFAULT}: prior_sigma = {cfg.prior_sigma} high-res feature cells (the default cut-off)")

# %% [markdown]
# ## 1. The split, on a real image
#
# Per-location energy $\|F(u)\|^2$ (summed over channels) of the high-res features, of $S$ and of $D$, for one level.
# The white outline is the true defect.
#
# > … high-resolution representations are decomposed into structure and detail priors to guide the refinement of
# > low-resolution features …
# > — HLGFA abstract
#
# `split` below is that decomposition (`hlgfa_lite/priors.py`).

# %%
def energy(features: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) -> (H, W): squared norm over channels."""
    return features[0].pow(2).sum(0).cpu().numpy()


def on_grid(mask: torch.Tensor, size: int) -> np.ndarray:
    """The mask on a square feature grid: a cell is 'defect' if any of its pixels is."""
    return F.adaptive_max_pool2d(mask[None, None].float(), size)[0, 0].cpu().numpy() > 0


def split_figure(inspection, mask, level: int, sigma: float, title: str):
    fh = inspection.high[level]
    structure, detail = split(fh, sigma)
    inside = on_grid(mask, fh.shape[-1])
    maps = {"F_H": energy(fh), f"S (structure, sigma {sigma:g})": energy(structure), "D = F_H - S (detail)": energy(detail)}
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    picture = to_uint8_image(inspection.hr_image[0])
    if mask.any():
        picture = outline(picture, on_grid(mask, picture.shape[0]), (255, 255, 255))
    axes[0].imshow(picture)
    axes[0].set_title(title, fontsize=8)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        ax.imshow(m, cmap="inferno", vmin=0, vmax=np.quantile(m, 0.995))  # each on its own scale: compare shapes
        if inside.any():
            ax.contour(inside, levels=[0.5], colors="white", linewidths=0.6)
        share = m.sum() / maps["F_H"].sum()
        contrast = m[inside].mean() / m[~inside].mean() if inside.any() else float("nan")
        ax.set_title(f"{name}\nenergy share {share:.2f}, defect/rest {contrast:.2f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


fig = split_figure(ins, mask, level=0, sigma=cfg.prior_sigma, title=f"{DEFAULT}, level 1 (stride 4)")
save_figure(fig, "02_split.png")
plt.show()

# %% [markdown]
# Each panel title carries two numbers: *energy share* is the fraction of the level's total energy that each part holds
# ($\|S\|^2 + \|D\|^2 \neq \|F_H\|^2$ in general, because $S$ and $D$ are not orthogonal), and *defect/rest* is the
# mean energy inside the defect divided by the mean outside it: how strongly each prior carries the defect.
# Each panel has its own colour scale, so compare shapes, and read the numbers for sizes: which prior holds more of
# the energy, and which one carries the defect more strongly at this level? Move to level 3 below and ask again.
#
# ### Try it: the cut-off
# Small $\sigma$: the structure keeps almost everything and the detail is thin. Large $\sigma$: the structure
# becomes a blurred silhouette and the detail takes over the rest.

# %%
import ipywidgets as widgets


def explore(image=DEFAULT, level=1, sigma=cfg.prior_sigma):
    inspection, m = features_of(image) if image != DEFAULT else (ins, mask)
    split_figure(inspection, m, level - 1, sigma, f"{image}, level {level}")
    plt.show()


widgets.interact(explore, image=widgets.Dropdown(options=list(picker), value=DEFAULT),
                 level=widgets.IntSlider(1, 1, 3),
                 sigma=widgets.FloatSlider(value=cfg.prior_sigma, min=0.5, max=8.0, step=0.5, continuous_update=False));

# %% [markdown]
# ## 2. They add back to the input, exactly
#
# The split invents nothing and loses nothing: whatever the head does with $S$ and $D$, together they are $F_H$.

# %%
for level, fh in enumerate(ins.high, start=1):
    structure, detail = split(fh, cfg.prior_sigma)
    error = (structure + detail - fh).abs().max().item()
    print(f"level {level}: max |S + D - F_H| = {error:.2e}")
    assert torch.allclose(structure + detail, fh, atol=1e-5)

# %% [markdown]
# ## 3. How the energy divides, level by level
#
# The share of energy in the detail prior, $\|D\|^2 / \|F_H\|^2$, as the cut-off grows. $\sigma$ is counted in feature
# cells, so the same $\sigma$ blurs a wider patch of the image at a deeper level (its cells are larger).

# %%
sigmas = [0.5, 1, 2, 3, 4, 6, 8]
fig, ax = plt.subplots(figsize=(5.5, 3))
for level, fh in enumerate(ins.high, start=1):
    shares = [split(fh, s)[1].pow(2).sum().item() / fh.pow(2).sum().item() for s in sigmas]
    ax.plot(sigmas, shares, marker="o", label=f"level {level} ({fh.shape[-1]}² cells)")
ax.axvline(cfg.prior_sigma, color="k", linestyle=":", label=f"default sigma {cfg.prior_sigma:g}")
ax.set_xlabel("sigma of the low-pass (feature cells)")
ax.set_ylabel("detail energy share")
ax.legend(fontsize=7)
save_figure(fig, "02_energy.png")
plt.show()

# %% [markdown]
# Read the curves at the dotted line, the default cut-off: that is the share of each level's energy the detail
# prior carries. Every curve rises with sigma: a wider blur moves more of the features out of the structure prior
# and into the detail prior. At the same sigma, the level whose curve lies highest is the one whose features change
# most from cell to cell.

# %% [markdown]
# ## 4. On the low-res grid
#
# `priors_on_low_grid` is what the model uses. Pixel-unshuffle only *moves* values: each 2×2 block of the
# high-res detail becomes 4 channels of one low-res cell, so nothing is averaged away.

# %%
for level, (fh, fl) in enumerate(zip(ins.high, ins.low), start=1):
    priors = priors_on_low_grid(fh, cfg.prior_sigma, cfg.hr_lr_ratio)
    _, detail = split(fh, cfg.prior_sigma)
    print(f"level {level}: F_L {tuple(fl.shape[1:])}, structure {tuple(priors.structure.shape[1:])}, "
          f"detail {tuple(priors.detail.shape[1:])}, target {tuple(priors.target.shape[1:])}")
    assert torch.equal(priors.detail.flatten().sort().values, detail.flatten().sort().values)  # the same values

# %% [markdown]
# ## 5. Could the head copy the answer? The leak
#
# The target is the pooled high-res features, and the priors *are* the high-res features, split in two. So the
# target can be rebuilt from the priors alone, exactly, defects included:
#
# $$T = \mathrm{avgpool}_r(S + D) = S_\downarrow + \frac{1}{r^2}\sum_{k=1}^{r^2} D_\downarrow^{(k)}$$
#
# (the second term is the mean over the $r^2$ sub-positions that pixel-unshuffle stacked into channels). A head
# that learned this formula would predict $T$ perfectly on *every* image, its misalignment would be zero on the
# defect too, and the anomaly map would go dark exactly where it should light up. Let us build that "cheating
# head" by hand and score the defective image with it:

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
axes[0].imshow(to_uint8_image(ins.lr_image[0]))
axes[0].set_title(DEFAULT)
for level, (ax, fh) in enumerate(zip(axes[1:], ins.high)):
    priors = priors_on_low_grid(fh, cfg.prior_sigma, cfg.hr_lr_ratio)
    b, c, h, w = priors.structure.shape
    cheat = priors.structure + priors.detail.view(b, c, cfg.hr_lr_ratio ** 2, h, w).mean(2)
    honest = misalignment(ins.low[level], priors.target)[0]  # the training-free map of lesson 01
    leaked = misalignment(cheat, priors.target)[0]
    ax.imshow(torch.cat([honest, leaked], dim=1).cpu().numpy(), cmap="jet", vmin=0, vmax=honest.max().item())
    ax.set_title(f"level {level + 1}: F_L vs T | cheat vs T\nmax e: {honest.max():.2f} | {leaked.max():.1e}", fontsize=8)
    ax.axis("off")
axes[0].axis("off")
save_figure(fig, "02_leak.png")
plt.show()

# %% [markdown]
# The cheat is linear (a 1×1 convolution could compute it), so a head with enough capacity can learn it, or come
# close. What in `hlgfa_lite/alignment.py` could stand in its way, and what is actually switched on?
#
# 1. **Narrowing** (`prior_width`, *off* by default). Each prior is projected to `prior_width × C` channels by a
#    1×1 convolution. Below 1, if the two priors together carry fewer channels than the number of dimensions the
#    target's vectors use (measured below), they cannot pass those vectors on exactly, and the cheat above breaks.
#    It is a hindrance, not a proof: the head also reads $F_L$ and each position's 3×3 neighbourhood (lesson 03),
#    and a near copy may do. The default `prior_width = 1.0` keeps every channel: **in the default model narrowing
#    is no defence at all.**
# 2. **Training on normal images only**, starting from the identity ($\hat F_L = F_L$, zero-initialised last
#    layers). This is no guarantee either: on good images the copy would also give zero loss, and the corrections
#    the trained head makes are not small (lesson 03 §4 prints $\|\hat F_L - F_L\| / \|F_L\|$: about half the size
#    of the features themselves, at every level). What the identity start buys is a head that begins at lesson 01's
#    honest map and must be pushed away from it.
# 3. **The gate** (lesson 03) multiplies the head's correction by a number between 0 and 1 per position and
#    channel. It starts mostly closed (its bias is $-2$, and $\mathrm{sigmoid}(-2) \approx 0.12$), but nothing keeps
#    it closed: training opens it wherever that lowers the loss on good images, and lesson 03's gate map shows how
#    far it opened.
#
# None of these *proves* that a trained head does not copy, so the project measures it instead: lesson 03 trains
# heads with and without priors and compares their training loss and the defect contrast of their maps.
#
# How many dimensions do the target's vectors use? The number of principal components that hold 99 % of their
# variance, against the width of the projected priors at a narrow setting and at the default:

# %%
for level, fh in enumerate(ins.high, start=1):
    target = priors_on_low_grid(fh, cfg.prior_sigma, cfg.hr_lr_ratio).target[0].flatten(1).T  # (h w, C)
    variance = torch.linalg.svdvals(target - target.mean(0)).pow(2)
    needed = int((variance.cumsum(0) / variance.sum() < 0.99).sum()) + 1
    c = target.shape[1]
    print(f"level {level}: C = {c:>3}, components for 99 % of T's variance: {needed:>3}; "
          f"the two priors together carry {2 * max(1, round(0.25 * c))} channels at prior_width 0.25, {2 * c} at 1.0")

# %% [markdown]
# So is narrowing required? It is a **switch** (`prior_width`), because the answer is empirical. The library's
# default is full width (`prior_width = 1.0`); narrow priors have not been benchmarked here, which is why lesson 03
# does not take the default on faith: it trains heads with and without priors and measures the defect contrast of
# their maps. A leaking head shows a *lower* training loss and a *lower* contrast at the same time.
#
# ## Check yourself
#
# Predict first, then open the answer. The cell below holds the evidence: run it, then press **Show the
# evidence** (where widgets are not drawn, call `evidence()`).
#
# 1. What is $D$ when $\sigma \to 0$?
#
#    <details><summary>Answer</summary>
#
#    Zero: without blur $S = F_H$, so $D = F_H - S = 0$. (`low_pass` treats $\sigma \le 0$ as "no low-pass"; a
#    model's `prior_sigma` must be above 0, since a model whose detail prior is always zero has no detail prior.)
#    </details>
#
# 2. §4 printed 160 detail channels for level 2 on the low-res grid. How many would it have with views of 768 and
#    256 px (the ratio $r = 3$ of lesson 01's widget), and why?
#
#    <details><summary>Answer</summary>
#
#    $C r^2 = 40 \times 9 = 360$: pixel-unshuffle stacks each $r \times r$ block of high-res detail into channels of
#    one low-res cell, so no value is averaged away; at $r = 2$ that was $40 \times 4 = 160$.
#    </details>
#
# 3. Why is the cheating head's misalignment zero even on the defect?
#
#    <details><summary>Answer</summary>
#
#    Because $\mathrm{avgpool}(S) + $ the mean of the unshuffled $D$ *is* $\mathrm{avgpool}(F_H) = T$, whatever the
#    image contains: the formula never looks at $F_L$, so there is nothing left to disagree.
#    </details>
#
# 4. From §5's printout: about how narrow would `prior_width` have to be before the two priors together carry fewer
#    channels than $T$'s components at *some* level, and which level would bind first?
#
#    <details><summary>Answer</summary>
#
#    A little under a half: the two priors carry $2\,\mathrm{round}(w C)$ channels, and level 1 (24 channels, 20
#    components) and level 2 (40 channels, 32 components) both need about two fifths of their width, level 3 less.
#    The default, `prior_width = 1.0`, is far from it. And even below it, an exact copy is blocked, not a near one:
#    whether a trained head copies is measured in lesson 03.
#    </details>

# %%
from hlgfa_lite.lessons.exercises import reveal


def evidence():  # the answers' evidence: runs only when you press the button below
    fh = ins.high[1]
    print("1. D at sigma 0 is zero:", torch.equal(split(fh, 0)[1], torch.zeros_like(fh)))
    ratio_three = torch.randn(1, fh.shape[1], 3 * 32, 3 * 32)  # a level-2 high-res map three times the low grid
    print("2. detail channels of level 2 at r = 3:", priors_on_low_grid(ratio_three, cfg.prior_sigma, 3).detail.shape[1],
          f"= {fh.shape[1]} x 9")
    for level, high in enumerate(ins.high, start=1):  # the smallest width at which 2 round(w C) >= the components
        target = priors_on_low_grid(high, cfg.prior_sigma, cfg.hr_lr_ratio).target[0].flatten(1).T
        variance = torch.linalg.svdvals(target - target.mean(0)).pow(2)
        needed = int((variance.cumsum(0) / variance.sum() < 0.99).sum()) + 1
        width = next(w / 100 for w in range(1, 101) if 2 * max(1, round(w / 100 * target.shape[1])) >= needed)
        print(f"4. level {level}: {needed} components; the two priors carry enough from prior_width {width:.2f}")


reveal(evidence, run_now=FAST)  # FAST (CI) runs it at once, so a broken evidence cell fails CI

# %% [markdown]
# ## Write this: the copy-the-target cheat
#
# Rebuild the target from the priors alone, for one level on the low-res grid: `structure` is $S_\downarrow$, shape
# $(C, h, w)$; `detail` is $D_\downarrow$, shape $(C r^2, h, w)$, where pixel-unshuffle put the $r^2$ sub-positions of
# channel $c$ at channels $c r^2, \dots, c r^2 + r^2 - 1$. Return $T$, shape $(C, h, w)$. `check` compares it with
# `priors_on_low_grid(...).target` on random features. Stuck? `solution("copy_the_target")`.

# %%
from hlgfa_lite.lessons.exercises import check, solution


def copy_the_target(structure: torch.Tensor, detail: torch.Tensor, ratio: int) -> torch.Tensor:
    # write this: two lines (hint: view the detail as (C, r*r, h, w))
    raise NotImplementedError


check("copy_the_target", copy_the_target);


# %% [markdown]
# ## Further research
#
# Open questions: change one knob, re-run the cells after it, and read the number named.
#
# 1. **The cut-off.** In the cell that builds `model`, build `preset("lite_paper", prior_sigma=4)` instead of the default 2,
#    and read §1's titles: the energy share and the defect/rest contrast of $S$ and of $D$. Which prior carries the
#    defect more strongly now, and at which level?
# 2. **Another defect.** In the same cell, set `DEFAULT` to the first `broken_small` image instead of `broken_large`,
#    and read §1's defect/rest contrast of $D$ at level 1 and (with the slider) at level 3. Do small defects live in
#    the detail prior?
# 3. **How much variance.** In §5's last code cell, count the components for 95 % instead of 99 % of $T$'s variance
#    (`< 0.95`). How narrow could `prior_width` then be before the two priors together carry fewer channels than
#    those components, at each level? Would that make a copy impossible, or only an exact one?

