"""hlgfa_lite demo: upload an image, see its anomaly map. The Gradio layout only, one function per tab; the work is
in the modules beside it (``uploads``, ``rendering``, ``visitor_fit``, ``models``, ``visitor_files``, ``examples``).

Run it with ``hlgfa-lite demo`` (an installed package is enough: ``pip install "hlgfa-lite[demo]"``), or
``python app.py`` in ``demo/`` or in a Space folder (a thin entry point that calls ``launch_demo``). Every handler
turns a visitor's mistake into a friendly message (a toast plus the verdict panel), never a traceback, and the
server keeps answering (``reported``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

# the bundled checkpoint was fit on the offline Lite0 weights; fetching others from the Hub would shift scores
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402
from PIL import UnidentifiedImageError  # noqa: E402
import torch  # noqa: E402

from ..assets import sample_dir  # noqa: E402
from ..device import resolve_device, usable_cpus  # noqa: E402
from ..errors import HLGFAError  # noqa: E402
from .examples import bundled_test_images, code_url, good_images, training_images  # noqa: E402
from .models import ModelStore  # noqa: E402
from .rendering import Rendered, colour_scale_legend, inspect_image, look_inside, render  # noqa: E402
from .uploads import MAX_UPLOAD, LoadedImage, UploadQuota, read_editor_value, read_upload  # noqa: E402
from .visitor_files import (SESSION_SECONDS, SessionFiles, install_stop_handlers, remove_process_folder,  # noqa: E402
                            remove_stale_folders, serve_gradio_cache_from_process_dir, write_picture)
from .visitor_fit import FittedPart, fit_lengths, fit_part, fit_steps, remove_fitted  # noqa: E402
from . import visitor_fit  # noqa: E402

log = logging.getLogger("hlgfa_lite.demo")
BOTTLE, MY_PART = "bottle (bundled model)", "my part (fitted in this session)"
# Inferences run one at a time, each with every core the machine gives us (a free Space has 2): a lone visitor
# gets the fastest answer, and queued visitors get the same throughput as two 1-thread inferences side by side
# (benchmarks/DEMO_RESULTS.md measures both). HLGFA_DEMO_CONCURRENCY and HLGFA_DEMO_THREADS override the rule.
CONCURRENCY = int(os.environ.get("HLGFA_DEMO_CONCURRENCY", 0)) or 1


def threads_per_inference(concurrency: int) -> int:
    """The usable cores shared among the inferences that run at once."""
    return max(1, usable_cpus() // concurrency)


THREADS = int(os.environ.get("HLGFA_DEMO_THREADS", 0)) or threads_per_inference(CONCURRENCY)
QUEUE = dict(default_concurrency_limit=CONCURRENCY, max_size=32)  # at most 32 visitors waiting
# Every event that runs the model shares one concurrency group, so QUEUE's limit bounds them together (Gradio would
# otherwise give each event its own limit); fits run one at a time in their own group.
MODEL_GROUP = dict(concurrency_id="model", concurrency_limit=QUEUE["default_concurrency_limit"])

PAPER_URL = "https://arxiv.org/abs/2602.09524"
INTRO = """
<div id="intro">

## hlgfa_lite · anomaly maps
Where an image's low-resolution view stops agreeing with its high-resolution view, something unusual is there.
Tap a bottle or upload an image. [Paper]({paper}){code} · *a reconstruction, not the authors' code*
</div>
"""

NO_IMAGE_YET = "**Image score —** · tap a bottle or upload an image."

HOW_IT_WORKS = """
A frozen network looks at each image twice, at 512 px and at 256 px. A small head, trained only on **good** parts,
learns to predict the high-resolution features from the low-resolution ones. Where that fails, something is there
that never occurred on a good part: the **anomaly map**. A reconstruction of *HLGFA* (arXiv 2602.09524), not the
authors' code.

**How to read it.** Colours use one **fixed scale** per model, calibrated on held-out good images: dark blue is the
typical good pixel, the middle of the scale is the brightest pixel any good image produced, red is twice as far.
So a good image stays calm and a defect stands out (no per-image stretching). The white outline and the mask
mark pixels above the defect threshold. The map leans on the alignment (which says *where*); the image score
leans on a Gaussian model of good features (which says *whether*): the mean of the brightest 1 % of pixels of
that second mix. The verdict compares it with two thresholds from good images the head never trained on: **normal** below the first, **borderline**
between them (within the calibration's own uncertainty: look at the part), **anomalous** above the second, which
is set so that at most 1 % of good parts like the calibration images exceed it. **Sensitivity** > 1 flags more,
< 1 fewer.
"""

FIT_HELP = """
Upload **good** images of one part (no defects), about 20, all taken the same way. The frozen backbone stays as
it is; only the alignment head ({params:.2f} M weights) is trained, then a few held-out images (and, with few
images, three cross-fitted heads) calibrate the thresholds and the colour scale. The time estimates are for 20
images on a quiet 2-core CPU (more when the machine is busy). **Stop** ends a fit between two steps. Your images,
results and checkpoint are deleted from the server when you close or reload this page (or after an hour without
use), and whenever the server stops.
"""

DRAW_HELP = """
Paint a scratch, a blot or a crack onto a good bottle, then press **Score my drawing**. The map should light up
where you painted (your strokes are outlined in green) and stay calm elsewhere. Thin strokes in the bottle's own
colours are the hardest case: try them.
"""

INSIDE_HELP = """
The image from *Inspect*, taken apart as in the notebooks: the two views the frozen backbone sees and the fused
map, then one panel per feature level (fine to coarse): the **structure prior** (smooth layout of the high-res
features), the **detail prior** (what the smoothing removed), the head's **gate** (how much of the detail-guided
correction it lets through) and the level's **misalignment** 1 − cos between the refined low-res features and the
high-res target.
"""

CSS = """
#intro h2 {margin: 0 0 0.2em 0;}
#intro p {margin: 0;}
.legend {width: 100%; font-size: 0.8em;}
.legend-bar {height: 14px; border-radius: 3px;}
.legend-labels {display: flex; justify-content: space-between; opacity: 0.8; white-space: nowrap;}
.gradio-container {max-width: 1280px !important;}
#verdict h3 {margin-top: 0;}
/* the example thumbnails: a compact grid on a desktop, one swipeable row on a phone, captions on two lines */
#inspect-examples, #inspect-examples .gallery-container, #inspect-examples .grid-wrap {
  height: auto !important; min-height: 0 !important; max-height: none !important;}
#inspect-examples .grid-container {padding-top: 32px !important;}
#inspect-examples .grid-container {grid-template-columns: repeat(7, minmax(0, 1fr)) !important; gap: 6px;}
#inspect-examples .caption-label {white-space: normal; font-size: 11px; line-height: 1.15; max-width: 92%;
                                  overflow: visible; text-overflow: clip; overflow-wrap: break-word;
                                  hyphens: auto;}
/* the command that scores a folder with a fitted head: wrapped on a phone, not cut off */
#fit-summary pre, #fit-summary code {white-space: pre-wrap !important; overflow-wrap: anywhere;}
#inside-gallery .caption-label {white-space: normal; max-width: 95%; font-size: 12px;}
#inside-gallery .grid-wrap {height: auto !important; max-height: none !important;}
@media (max-width: 640px) {
  #inside-gallery .grid-container {grid-template-columns: 1fr !important;}
  .gradio-container {padding-left: 6px !important; padding-right: 6px !important;}
  #intro {font-size: 0.9em;}
  #inspect-examples .grid-wrap {overflow-x: auto;}
  #inspect-examples .grid-container {grid-template-columns: none !important; grid-auto-flow: column;
                                     grid-auto-columns: 76px; grid-template-rows: 76px !important;}
  /* the two maps side by side: their labels, without the icon, clear the corner buttons */
  #overlay label[data-testid=block-label] > span, #mask label[data-testid=block-label] > span {display: none;}
  #overlay label[data-testid=block-label], #mask label[data-testid=block-label] {font-size: 12px;}
}
"""


def tolerant_upload(component: gr.Image) -> gr.Image:
    """Make an upload step that never fails: Gradio opens an uploaded file with PIL before our function runs,
    which raises on a corrupt or non-image file. Here the raw path is passed on instead, and ``read_upload`` says in
    one sentence what is wrong. (Wrapping the instance, not subclassing: a Component subclass makes Gradio write a
    .pyi stub next to this file.)"""
    strict = component.preprocess

    def preprocess(payload):
        try:
            return strict(payload)
        except Exception:  # noqa: BLE001 - whatever PIL or Gradio dislikes, read_upload explains it
            return str(payload.path) if payload is not None and getattr(payload, "path", None) else None

    component.preprocess = preprocess
    return component


def reporting_upload_paths(editor: gr.ImageEditor) -> gr.ImageEditor:
    """Make an image editor's value also name the uploaded files it was read from (``"uploads"``), so the handler
    can count them as the session's and they are deleted with it (the pixels alone do not say where they came
    from)."""
    strict = editor.preprocess

    def preprocess(payload):
        try:
            value = strict(payload)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):  # Gradio's decode, before any handler
            raise gr.Error("The editor could not read that picture: upload a PNG or JPEG image.") from None
        if isinstance(value, dict) and payload is not None:
            files = [getattr(payload, "background", None), getattr(payload, "composite", None),
                     *(getattr(payload, "layers", None) or [])]
            value["uploads"] = [f.path for f in files if getattr(f, "path", None)]
        return value

    editor.preprocess = preprocess
    return editor


def _friendly(exc: Exception) -> str:
    if isinstance(exc, HLGFAError):
        return str(exc)
    log.exception("unexpected error in the demo")
    return "Something went wrong with this request; the demo is still running, please try another image."


def reported(failed: Callable[..., tuple], warn: bool = True):
    """The one place where a handler's failure becomes what the visitor sees: an ``HLGFAError``'s own sentence, any
    other exception a generic line (logged with its traceback); a toast when ``warn``, and the handler's outputs
    from ``failed(panel, *inputs)``, ``panel`` being the message as the Markdown a verdict panel shows. The server
    keeps answering either way. (``wraps`` keeps the signature: Gradio reads it for ``gr.Request`` and progress.)"""
    def decorate(handler):
        @functools.wraps(handler)
        def guarded(*inputs, **options):
            try:
                return handler(*inputs, **options)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message, never a traceback
                message = _friendly(exc)
                if warn:
                    gr.Warning(message)
                return failed(f"### ✖ {message}", *inputs)
        return guarded
    return decorate


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


class Shared:
    """What every tab uses: the served model and fitted heads, and each visitor session's files, upload quota,
    running fit and fitted part."""

    def __init__(self, run_dir: str | Path | None, device: str):
        serve_gradio_cache_from_process_dir()  # before any component: uploads then live and go with our folder
        remove_stale_folders()  # left by a demo process that was killed
        self.store = ModelStore(run_dir, device=device)
        self.store.warm_up()
        self.quota = UploadQuota()
        self.sessions = SessionFiles(idle_seconds=SESSION_SECONDS)  # each session's uploads and result pictures
        self.cancels: dict[str | None, threading.Event] = {}  # a session's stop signal, while its fit runs
        self.fitted_parts: dict[str | None, FittedPart] = {}  # each session's part, removed when the session ends

    def charge(self, request: gr.Request | None, paths) -> None:
        """Count a session's uploads (the bundled sample is free) after claiming them, so that even refused ones
        are deleted with the session. Any other file is refused: Gradio accepts every path in its cache, which
        holds the demo's own folders too."""
        session, bundled = _session(request), str(sample_dir())
        self.sessions.claim(session, paths)
        if not all(self.sessions.is_upload(p) or str(p).startswith(bundled) for p in paths if p):
            raise HLGFAError("Only images uploaded from this page can be used; please upload the image again.")
        self.quota.charge(session, [p for p in paths if not str(p).startswith(bundled)])

    def picture_folder(self, request: gr.Request | None) -> Path:
        return self.sessions.folder(_session(request))

    def pictures(self, shown: Rendered, request: gr.Request | None) -> tuple[str, str]:
        """Unique files in the session's folder, not arrays: Gradio would rewrite one cache file per identical
        picture while another visitor downloads it, and keep it beyond the session."""
        folder = self.picture_folder(request)
        return write_picture(shown.overlay, ".jpg", folder), write_picture(shown.mask, ".png", folder)

    def model_for(self, choice: str, part: FittedPart | None):
        if choice == MY_PART:
            if part is None:
                raise HLGFAError("You have not fitted your own part yet: do that in the “Fit” tab, "
                                 "or choose the bundled bottle model.")
            return self.store.custom(part.run_dir), "parts of your own"
        return self.store.model, "bottles" if self.store.is_bundled else "parts"

    def end_session(self, request: gr.Request = None):
        """The visitor closed or reloaded the page: stop its fit, remove its fitted part, uploads and result
        pictures now (Gradio deletes the session's state, and so calls ``forget_part``, only an hour later), forget
        its upload count."""
        session = _session(request)
        event = self.cancels.pop(session, None)
        if event is not None:
            event.set()
        remove_fitted(self.fitted_parts.pop(session, None), self.store)
        self.sessions.release(session)
        self.quota.forget(session)


def inspect_tab(shared: Shared, part_state: gr.State, result_state: gr.State) -> tuple[gr.Radio, gr.Slider]:
    """Score an upload or a bundled test image; returns the model choice and the sensitivity the other tabs use."""
    gallery_items = bundled_test_images()  # (caption, path) of every bundled test image

    @reported(lambda panel, *inputs: (None, None, None, panel, None))
    def inspect(path, choice, sensitivity, part, request: gr.Request = None):
        if path is None:
            return None, None, None, NO_IMAGE_YET, None
        shared.charge(request, [path])
        model, name = shared.model_for(choice, part)
        result = inspect_image(model, read_upload(path))
        shown = render(model, result, sensitivity, name)
        return *shared.pictures(shown, request), round(shown.score, 4), shown.verdict, result

    @reported(lambda panel, *inputs: (gr.skip(), gr.skip(), gr.skip(), panel), warn=False)
    def rerender(choice, sensitivity, part, result, request: gr.Request = None):
        if result is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        model, name = shared.model_for(choice, part)
        shown = render(model, result, sensitivity, name)
        return *shared.pictures(shown, request), round(shown.score, 4), shown.verdict

    def pick_example(evt: gr.SelectData):
        return gallery_items[evt.index][1]

    with gr.Tab("Inspect", id="inspect"):  # short tab names: all four fit on a phone, no "•••" menu
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                examples = gr.Gallery([(path, caption) for caption, path in gallery_items],
                                      label="Bundled test bottles: tap one", columns=7, rows=2, height="auto",
                                      allow_preview=False, object_fit="cover", buttons=[], elem_id="inspect-examples")
                image = tolerant_upload(gr.Image(type="filepath", image_mode=None, label="Image to inspect",
                                                 sources=["upload", "webcam", "clipboard"], height=250,
                                                 elem_id="input-image"))
            with gr.Column(scale=1, min_width=320):
                verdict = gr.Markdown(NO_IMAGE_YET, elem_id="verdict")
                with gr.Row():
                    # two corner buttons, not three: on a phone a third covers the label ("Anom")
                    overlay = gr.Image(label="Anomaly map", format="jpeg", interactive=False, height=250,
                                       min_width=150, buttons=["download", "fullscreen"], elem_id="overlay")
                    mask = gr.Image(label="Defect mask", format="png", interactive=False, height=250, min_width=150,
                                    buttons=["download", "fullscreen"], elem_id="mask")
                gr.HTML(colour_scale_legend(shared.store.model.calibrated), elem_id="legend")
                score = gr.Number(None, label="Image score", interactive=False, visible=False,
                                  elem_id="score")  # for the API; the verdict shows it to people
                choice = gr.Radio([BOTTLE, MY_PART], value=BOTTLE, label="Model", elem_id="model-choice")
                sensitivity = gr.Slider(0.25, 4.0, value=1.0, step=0.05, label="Sensitivity",
                                        info="1 = calibrated threshold; higher flags more", elem_id="sensitivity")
        with gr.Accordion("How it works, and how to read the map", open=False):
            gr.Markdown(HOW_IT_WORKS)

    inspect_outputs = [overlay, mask, score, verdict, result_state]
    examples.select(pick_example, None, image, api_visibility="private")
    # an upload is not the thumbnail picked before it: no thumbnail stays highlighted
    image.upload(lambda: gr.Gallery(selected_index=None), None, examples, api_visibility="private",
                 show_progress="hidden")
    image.change(inspect, [image, choice, sensitivity, part_state], inspect_outputs, api_name="inspect",
                 show_progress_on=[verdict], **MODEL_GROUP)
    choice.change(inspect, [image, choice, sensitivity, part_state], inspect_outputs, api_visibility="private",
                  **MODEL_GROUP)
    sensitivity.release(rerender, [choice, sensitivity, part_state, result_state], [overlay, mask, score, verdict],
                        api_visibility="private")
    return choice, sensitivity


def fit_tab(shared: Shared, part_state: gr.State, choice: gr.Radio) -> None:
    """Fit a head on the visitor's good images; a finished fit switches Inspect's ``choice`` to it."""
    @reported(lambda panel, files, length, old_part, *rest: (panel, None, old_part, gr.skip()))
    def fit_own(files, length, old_part, progress=gr.Progress(), request: gr.Request = None):
        session = _session(request)
        cancel = shared.cancels[session] = threading.Event()  # present only while this fit runs
        try:
            paths = [getattr(f, "name", f) for f in (files or [])]
            shared.charge(request, paths)
            part = fit_part(paths, shared.store, steps=fit_steps(length), cancel=cancel,
                            report_progress=lambda f, text: progress(f, desc=text))
        finally:
            if shared.cancels.get(session) is cancel:
                del shared.cancels[session]
        remove_fitted(old_part, shared.store)  # a new fit replaces the session's previous one
        shared.fitted_parts[session] = part
        gr.Info("Your head is ready: the Inspect tab now uses it.", duration=5)  # not over the controls for long
        return part.summary, part.zip_path, part, MY_PART

    def claim_fit_files(files, request: gr.Request = None):
        """Uploaded images wait in the Fit tab until the visitor fits (or leaves): they are the session's now."""
        shared.sessions.claim(_session(request), [getattr(f, "name", f) for f in (files or [])])

    def stop_fit(request: gr.Request = None):
        """The fit stops between two steps; its slot is free once it has (``visitor_fit.fit_part``). With no fit
        running, the summary of the last one stays. (A fit still waiting in the queue is dropped by the button's
        ``cancels``, which the browser carries out; an API client cancels its own queued job.)"""
        event = shared.cancels.get(_session(request))
        if event is None:
            gr.Info("No fit is running.", duration=3)
            return gr.skip()
        event.set()
        return "Stopping the fit…"

    with gr.Tab("Fit", id="fit"):
        gr.Markdown(FIT_HELP.format(params=shared.store.model.trainable_parameters() / 1e6))
        with gr.Row():
            with gr.Column():
                files = gr.File(file_count="multiple", file_types=["image"], label="Good images of your part",
                                height=220, elem_id="fit-files")
                use_sample = gr.Button("Use the 20 bundled bottle images", size="sm")
                length = gr.Radio(fit_lengths(), value="normal", label="Training length", elem_id="fit-length")
                with gr.Row():
                    fit_button = gr.Button("Fit the head", variant="primary", elem_id="fit-button")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop-fit-button")
            with gr.Column():
                fit_summary = gr.Markdown("Nothing fitted yet.", elem_id="fit-summary")
                download = gr.File(label="Your checkpoint (model.json + head.safetensors, zipped)", interactive=False,
                                   elem_id="fit-download")

    use_sample.click(training_images, None, files, api_visibility="private")
    files.change(claim_fit_files, files, None, api_visibility="private", show_progress="hidden")
    # one progress bar, on the summary (it replaces "Nothing fitted yet." while the head trains)
    fitting = fit_button.click(fit_own, [files, length, part_state], [fit_summary, download, part_state, choice],
                               api_name="fit", concurrency_limit=1, concurrency_id="fit",
                               show_progress_on=[fit_summary])
    stop_button.click(stop_fit, None, fit_summary, api_name="stop_fit", cancels=[fitting])


def sensitivity_note(sensitivity):
    return f"Sensitivity **{sensitivity:.2f}** (set in *Inspect*; 1 = the calibrated threshold, higher flags more)."


def draw_tab(shared: Shared, sensitivity: gr.Slider) -> None:
    """Paint a defect onto a good bottle and score it with the bundled model at Inspect's sensitivity."""
    def claim_drawing(value, request: gr.Request = None):
        """An image a visitor put into the editor is the session's from its upload on."""
        if isinstance(value, dict):
            shared.sessions.claim(_session(request), value.get("uploads") or [])

    @reported(lambda panel, *inputs: (None, None, panel))
    def score_drawing(value, sensitivity, request: gr.Request = None):
        claim_drawing(value, request)
        loaded, painted = read_editor_value(value)  # the same pixel rule as an Inspect upload
        result = inspect_image(shared.store.model, loaded, painted)
        shown = render(shared.store.model, result, sensitivity, "bottles")
        return *shared.pictures(shown, request), shown.verdict

    good = good_images()
    with gr.Tab("Draw", id="draw") as tab:
        gr.Markdown(DRAW_HELP)
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Paint on a good bottle**")  # a label outside the editor: its toolbar covers one
                editor = reporting_upload_paths(gr.ImageEditor(
                    value=good[0], type="numpy", sources=["upload"], layers=False, transforms=[], show_label=False,
                    height=420, elem_id="editor",
                    brush=gr.Brush(colors=["#2b1d0e", "#000000", "#ffffff", "#8a5a2b", "#c0392b"], default_size=6,
                                   color_mode="fixed")))
                with gr.Row():
                    start_from = gr.Dropdown([(f"good bottle {Path(p).stem}", p) for p in good], value=good[0],
                                             label="Start again from", scale=2, min_width=160)
                    draw_button = gr.Button("Score my drawing", variant="primary", scale=1, min_width=120)
                draw_note = gr.Markdown(sensitivity_note(1.0), elem_id="draw-sensitivity")
            with gr.Column():
                draw_verdict = gr.Markdown(elem_id="draw-verdict")
                draw_overlay = gr.Image(label="Anomaly map (your strokes outlined in green)", format="jpeg",
                                        interactive=False, height=320)
                draw_mask = gr.Image(label="Defect mask", format="png", interactive=False, height=200)

    sensitivity.change(sensitivity_note, sensitivity, draw_note, api_visibility="private", show_progress="hidden")
    start_from.change(lambda path: path, start_from, editor, api_visibility="private")
    editor.upload(claim_drawing, editor, None, api_visibility="private", show_progress="hidden")
    # an editor built inside a hidden tab can come up without its picture: set it when the tab opens
    tab.select(lambda path: path, start_from, editor, api_visibility="private", show_progress="hidden")
    draw_button.click(score_drawing, [editor, sensitivity], [draw_overlay, draw_mask, draw_verdict], api_name="draw",
                      **MODEL_GROUP)


def inside_tab(shared: Shared, choice: gr.Radio, part_state: gr.State, result_state: gr.State) -> None:
    """Every intermediate of the image Inspect scored last, drawn when the tab opens."""
    @reported(lambda panel, *inputs: (None, panel), warn=False)
    def inside(choice, part, result, request: gr.Request = None):
        if result is None:
            return None, "Inspect an image first (first tab); its inside is shown here."
        model, _ = shared.model_for(choice, part)
        tensor = torch.from_numpy(result.image).permute(2, 0, 1).float() / 255
        # unique files, as for Inspect's pictures (no shared cache file rewritten under a download)
        return [(write_picture(picture, ".png", shared.picture_folder(request)), caption)
                for picture, caption in look_inside(model, LoadedImage(tensor))], ""

    with gr.Tab("Inside", id="inside") as tab:
        gr.Markdown(INSIDE_HELP)
        message = gr.Markdown()
        gallery = gr.Gallery(label="Intermediates", columns=2, height="auto", object_fit="contain",
                             elem_id="inside-gallery")
    tab.select(inside, [choice, part_state, result_state], [gallery, message], api_name="look_inside",
               **MODEL_GROUP)


def build_demo(run_dir: str | Path | None = None, device: str = "cpu") -> gr.Blocks:
    """The whole demo as a Blocks app, serving the checkpoint in ``run_dir`` (default: the bundled bottle model).

    On a phone the columns stack, so each tab's layout is in the order a visitor scrolls. ``delete_cache`` is
    Gradio's own clean-up of what it tracks, for files that no session claimed (an upload a client never used):
    every 10 minutes, those older than a session. What sessions use goes when they end (``Shared.end_session``),
    everything when the server stops (``launch_demo``)."""
    shared = Shared(run_dir, device)

    def forget_part(part):
        # a function, not a bound method of ``shared``: Gradio deep-copies the page config, which holds this
        # callback, for every visitor, and a method would drag in (and fail on) the model store's locks
        remove_fitted(part, shared.store)

    with gr.Blocks(title="hlgfa_lite: anomaly maps", delete_cache=(600, SESSION_SECONDS)) as demo:
        part_state = gr.State(None, time_to_live=SESSION_SECONDS, delete_callback=forget_part)
        result_state = gr.State(None, time_to_live=SESSION_SECONDS)
        code = code_url()
        gr.Markdown(INTRO.format(paper=PAPER_URL, code=f" · [Code]({code})" if code else ""))
        with gr.Tabs():
            choice, sensitivity = inspect_tab(shared, part_state, result_state)
            fit_tab(shared, part_state, choice)
            draw_tab(shared, sensitivity)
            inside_tab(shared, choice, part_state, result_state)
        demo.unload(shared.end_session)
    return demo


def launch_demo(run_dir: str | Path | None = None, torch_threads: int | None = THREADS, device: str | None = None,
                **launch_kwargs) -> gr.Blocks:
    """Build, queue and launch with the demo's limits (upload size, concurrency, torch threads per request; None
    leaves the process's setting alone, as tests do); ``device`` defaults to ``HLGFA_DEVICE`` or auto (a GPU when
    there is one); other kwargs go to ``launch``."""
    if torch_threads:
        torch.set_num_threads(torch_threads)
    # Gradio's worker threads leave event loops to the garbage collector: harmless, but noisy where the CLI
    # shows every warning once
    warnings.filterwarnings("ignore", message="unclosed event loop", category=ResourceWarning)
    demo = build_demo(run_dir, device=resolve_device(device or os.environ.get("HLGFA_DEVICE", "auto"))).queue(**QUEUE)
    atexit.register(remove_process_folder)  # uploads, fit folders and pictures go with the server

    def stop_serving() -> None:
        visitor_fit.SERVER_STOPPING.set()  # running fits end at their next step instead of holding up the exit
        demo.close()  # no request starts or writes after this
        remove_process_folder()

    install_stop_handlers(stop_serving)  # SIGTERM (docker stop, systemd) would otherwise skip atexit
    # what the demo writes is served from Gradio's cache (our process folder), so only the sample needs allowing
    options = dict(max_file_size=MAX_UPLOAD, allowed_paths=[str(sample_dir())],
                   ssr_mode=False,
                   theme=gr.themes.Soft(primary_hue="indigo"), css=CSS, footer_links=["api"])
    options.update(launch_kwargs)
    demo.launch(**options)
    return demo


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch_demo(os.environ.get("HLGFA_RUN_DIR") or None)
