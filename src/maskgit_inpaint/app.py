"""`maskgit serve`: a local Gradio app to inpaint one image with a brush-painted hole.

The inpainting itself lives in plain functions (`prepare_image`, `known_from_mask`,
`run_inpaint`) that need neither Gradio nor a browser; `build_app` wires them to a
`gr.Blocks` page and `serve` launches it on loopback with bounded uploads and a queue that
runs one request at a time.

Gradio is imported only inside `build_app`/`serve`, so the rest of this module works
without it. Nothing phones home: analytics are off and the theme uses local fonts.
"""
from __future__ import annotations

import io
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .images import InputError, normalize_image, to_rgb

# Set before Gradio is imported anywhere in this process: no usage analytics, no version check.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

MAX_FILE_SIZE = "10mb"               # Gradio's upload bound
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the same bound, checked again for files handed to run_inpaint
EDITOR_SIDE = 512                    # the editor shows the model-size image upscaled to about this side
HOLE_RGBA = (255, 0, 255, 150)       # how a hole is drawn in the editor's brush layer
MAX_PIXELS = 64_000_000              # refuse bigger pictures (decompression bombs) before decoding

CSS = """
.pixelated img { image-rendering: pixelated; }
#result img { width: 100%; height: 100%; object-fit: contain; }
#strip .image-frame { width: 100%; padding-top: 2em; }
#strip img { width: 100%; height: auto; max-height: none; object-fit: contain; }
#status textarea { font-family: ui-monospace, monospace; }
"""


class ImageInputError(ValueError):
    """The upload is not a usable image; the message says why."""


# ----------------------------------------------------------------------------- images
@dataclass
class PreparedImage:
    array: np.ndarray                       # (size, size, 3) uint8, what the model sees
    original_size: tuple[int, int]          # (width, height) before cropping
    box: tuple[int, int, int, int]          # centre-crop box (left, top, right, bottom) in the original
    note: str | None = None                 # set when the image was cropped or resized


def _open_image(source: Any) -> Image.Image:
    """A PIL image from an array, a PIL image, a path or bytes; ImageInputError otherwise."""
    if isinstance(source, Image.Image):
        try:
            return normalize_image(source, "the image")
        except InputError as e:
            raise ImageInputError(str(e)) from None
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).round().astype(np.uint8)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
            return Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
        raise ImageInputError(f"expected an (H, W, 3) image array, got shape {arr.shape}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the upload"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise ImageInputError(f"{name}: file not found")
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise ImageInputError(f"{name}: larger than {MAX_FILE_SIZE}; upload a smaller image")
        data = path.read_bytes()
    else:
        raise ImageInputError(f"expected an image, got {type(source).__name__}")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageInputError(f"{name} is {img.width}x{img.height} pixels, more than {MAX_PIXELS // 10**6} "
                                  "megapixels; upload a smaller image")
        img.load()
        return normalize_image(img, name)  # upright, 8-bit
    except InputError as e:
        raise ImageInputError(str(e)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, ImageInputError):
            raise
        kind = "not an image" if isinstance(e, UnidentifiedImageError) else f"an unreadable image ({e})"
        raise ImageInputError(f"{name} is {kind}: upload a PNG, JPEG, WebP or BMP picture") from None


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def prepare_image(source: Any, size: int) -> PreparedImage:
    """Centre-crop to a square and resize to the model's `size`, saying so in `note`."""
    img = to_rgb(_open_image(source))
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageInputError("the image is empty")
    box = centre_box(w, h)
    notes = []
    if (w, h) != (box[2] - box[0], box[3] - box[1]):
        img = img.crop(box)
        notes.append(f"centre-cropped from {w}x{h} to {img.size[0]}x{img.size[1]}")
    if img.size != (size, size):
        notes.append(f"resized from {img.size[0]}x{img.size[1]} to {size}x{size}")
        img = img.resize((size, size), Image.LANCZOS if img.size[0] > size else Image.BICUBIC)
    note = None
    if notes:
        note = "Image " + " and ".join(notes) + f" (the model works at {size}x{size})."
    return PreparedImage(np.asarray(img, dtype=np.uint8).copy(), (w, h), box, note)


def _write_png_once(array: np.ndarray, folder: Path, name: str = "image", max_age_s: float = 3600.0) -> Path:
    """Write `array` as `folder/<content hash>/<name>.png` (atomically, once), dropping files
    older than `max_age_s` so a long-running server does not fill the disk."""
    import hashlib

    from .checkpoints import atomic_write

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    data = buf.getvalue()
    path = folder / hashlib.sha256(data).hexdigest()[:24] / f"{name}.png"
    if path.exists():
        path.touch()
        return path
    now = time.time()
    for old in folder.glob("*/*.png"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                old.unlink()
                old.parent.rmdir()
        except OSError:
            pass
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def display_scale(size: int) -> int:
    return max(1, EDITOR_SIDE // size)


def upscale(array: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale so pixels stay crisp in the editor."""
    return array.repeat(scale, 0).repeat(scale, 1) if scale > 1 else array


# ----------------------------------------------------------------------------- masks
def _hole_map(mask: Any) -> np.ndarray:
    """(H, W) float32 in [0, 1], 1 = hole, from a brush layer or a mask picture."""
    if isinstance(mask, (str, Path)):
        try:
            mask = _open_image(mask)
        except ImageInputError as e:
            raise ImageInputError(f"mask: {e}") from None
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("RGBA") if "A" in mask.getbands() else mask.convert("L"))
    arr = np.asarray(mask)
    if arr.dtype == bool:                             # known mask, True = known
        if arr.ndim != 2:
            raise ImageInputError(f"a known mask must be (H, W), got shape {arr.shape}")
        return (~arr).astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):      # painted layer: anything painted is hole
        return (arr[..., -1] > 0).astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] in (1, 3):
        arr = arr.mean(axis=2)
    if arr.ndim != 2:
        raise ImageInputError(f"cannot read a mask from an array of shape {arr.shape}")
    return (arr < 128).astype(np.float32)             # mask picture: 255 known, 0 hole (as masks.py)


def _hole_at_size(hole: np.ndarray, size: int, prepared: PreparedImage | None) -> np.ndarray:
    """Bring an (H, W) hole map onto the model's grid: a pixel any part of which is hole is hole."""
    h, w = hole.shape
    if prepared is not None and (w, h) == prepared.original_size and (w, h) != (size, size):
        left, top, right, bottom = prepared.box       # a mask drawn on the original: crop it alike
        hole = hole[top:bottom, left:right]
        h, w = hole.shape
    if h != w:
        where = f" but the image is {prepared.original_size[0]}x{prepared.original_size[1]}" if prepared else ""
        raise ImageInputError(f"the mask is {w}x{h}{where}: give a mask of the image's size or a square one")
    if (h, w) != (size, size):
        hole = np.asarray(Image.fromarray(hole.astype(np.float32)).resize((size, size), Image.BOX))
    return hole > 1e-6


def known_from_mask(mask: Any, size: int, prepared: PreparedImage | None = None) -> np.ndarray:
    """(size, size) bool, True = known pixel, from any of:

    - the editor's value (a dict with `layers`): every painted pixel of every layer is hole;
    - a bool array, True = known (the project's convention);
    - an RGBA brush layer (alpha > 0 is hole);
    - a mask picture (array, PIL image or path), 255 = known and 0 = hole, like `maskgit masks`.

    A mask at the original image's size is centre-cropped like the image; a square mask of
    another size (the editor's upscaled canvas) is scaled, a pixel being hole when any part
    of it is. None means an empty mask.
    """
    if mask is None:
        return np.ones((size, size), bool)
    if isinstance(mask, dict):
        holes = [_hole_map(x) for x in (mask.get("layers") or []) if x is not None]
        if not holes:
            return np.ones((size, size), bool)
        if any(x.shape != holes[0].shape for x in holes):
            raise ImageInputError("the editor's layers differ in size")
        return ~_hole_at_size(np.maximum.reduce(holes), size, prepared)
    return ~_hole_at_size(_hole_map(mask), size, prepared)


def generated_known_mask(kind: str, seed: int, size: int) -> np.ndarray:
    """One of the project's generated hole shapes (masks.GENERATORS), True = known."""
    from .masks import generate_masks

    return generate_masks(kind, 1, size, int(seed))[0]


def hole_layer(known: np.ndarray, scale: int = 1) -> np.ndarray:
    """An RGBA brush layer showing the hole of `known` (for the editor)."""
    layer = np.zeros(known.shape + (4,), np.uint8)
    layer[~known] = HOLE_RGBA
    return upscale(layer, scale)


# ----------------------------------------------------------------------------- inpainting
@dataclass
class InpaintSettings:
    schedule: str = "cosine"
    steps: int = 8
    sweet_spot: int | None = None      # stop after this many steps; None or 0 = run all steps
    choice_temperature: float = 4.5    # Gumbel noise on the confidences ("temperature" in the UI)
    temperature: float = 1.0           # sampling temperature of the tokens; 0 = argmax
    seed: int = 0
    composite: bool = True             # put the known pixels back over the output (model.blend: seamless by default)
    guidance: float = 0.0              # context guidance scale (0 = off; costs a second forward pass per step)
    guidance_steps: int | None = None  # guide only the first K steps (None = every step)
    guidance_schedule: str = "constant"  # "linear": the scale rises to `guidance` over the steps
    token_threshold: float = 0.0       # regenerate a token when more than this share of its patch is hole
    weak_guidance: bool = False        # guide against the model's weak transformer (if it has one)

    @classmethod
    def from_model(cls, model, **changes) -> "InpaintSettings":
        s = model.sampler
        return replace(cls(s.gamma, s.steps, s.sweet_spot, s.choice_temperature, s.token_temperature,
                           guidance=s.guidance, guidance_steps=s.guidance_steps,
                           guidance_schedule=s.guidance_schedule, token_threshold=s.token_threshold,
                           weak_guidance=s.weak_guidance), **changes)

    @classmethod
    def from_ui(cls, schedule, steps, sweet_spot, choice_temperature, temperature, guidance, guided_steps, seed,
                composite, guidance_schedule="constant", token_threshold=0.0,
                weak_guidance=False) -> "InpaintSettings":
        """From the page's widgets, where 0 means "off" for the sweet spot and "every step" for the
        guided steps, and an empty number box comes as None."""
        return cls(schedule, int(steps), int(sweet_spot or 0) or None, float(choice_temperature), float(temperature),
                   int(seed or 0), bool(composite), float(guidance or 0), int(guided_steps or 0) or None,
                   guidance_schedule or "constant", float(token_threshold or 0), bool(weak_guidance))

    def sampler(self):
        from .sampling import SamplerConfig

        steps = int(self.steps)
        spot = int(self.sweet_spot) if self.sweet_spot else None
        cfg = SamplerConfig(gamma=self.schedule, steps=steps, sweet_spot=spot if spot and spot < steps else None,
                            choice_temperature=float(self.choice_temperature),
                            token_temperature=float(self.temperature),
                            guidance=float(self.guidance),
                            guidance_steps=int(self.guidance_steps) if self.guidance_steps else None,
                            guidance_schedule=self.guidance_schedule,
                            token_threshold=float(self.token_threshold), weak_guidance=bool(self.weak_guidance))
        cfg.validate()
        return cfg


@dataclass
class InpaintResult:
    """What `run_inpaint` returns; unpacks as `result, strip, message = run_inpaint(...)`."""
    result: np.ndarray | None            # (size, size, 3) uint8, None when nothing could be done
    strip: np.ndarray | None             # per-step strip (token masks over decoded images)
    message: str
    level: str = "info"                  # "info", "warning" (done, but look) or "error" (nothing done)
    known: np.ndarray | None = None      # (size, size) bool mask that was used, True = known
    image: np.ndarray | None = None      # (size, size, 3) uint8 input as the model saw it
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter((self.result, self.strip, self.message))


def run_inpaint(model, image: Any, mask: Any, settings: InpaintSettings | None = None) -> InpaintResult:
    """Inpaint one image with a painted or given mask. No Gradio, no browser.

    `image`: (H, W, 3) uint8 array, PIL image, path or bytes, of any size (centre-cropped and
    resized to the model's size, with a note in the message). `mask`: the editor's value,
    a bool known mask (True = known) or an RGBA brush layer; see `known_from_mask`.
    Bad input gives a result of None and a message saying why, never an exception.
    """
    import torch

    from .visualize import step_strip

    settings = settings or InpaintSettings.from_model(model)
    size = model.image_size
    if image is None:
        return InpaintResult(None, None, "No image yet: pick a sample or upload an image.", "error")
    try:
        prepared = prepare_image(image, size)
        known = known_from_mask(mask, size, prepared)
        sampler = settings.sampler()
    except (ImageInputError, ValueError) as e:
        return InpaintResult(None, None, str(e).rstrip(".") + ".", "error")
    if sampler.weak_guidance and sampler.guidance and not model.has_weak_transformer:
        return InpaintResult(None, None, "Weak guidance needs a weak transformer and this model has none: "
                                         "untick it.", "error")
    notes = [prepared.note] if prepared.note else []
    base = dict(known=known, image=prepared.array, notes=notes)

    n_hole = int((~known).sum())
    if n_hole == 0:
        msg = "The mask is empty: paint the hole with the brush (or draw a generated one). Returned the input unchanged."
        return InpaintResult(prepared.array.copy(), None, " ".join(notes + [msg]), "warning", **base)

    t0 = time.perf_counter()
    images01 = torch.from_numpy(prepared.array).permute(2, 0, 1)[None].float() / 255.0
    known_t = torch.from_numpy(known)[None]
    out = model.inpaint(images01, known_t, sampler=sampler, seed=int(settings.seed),
                        composite=bool(settings.composite), return_steps=True)
    result = (out.images[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    strip = step_strip(images01, known_t, out, size)[0]
    seconds = time.perf_counter() - t0

    steps_run = len(out.step_masks)
    if n_hole == known.size:
        level, what = "warning", ("The whole image is masked: generated a new image from scratch "
                                  "(nothing of the input is kept).")
    else:
        level, what = "info", f"Inpainted {n_hole} of {known.size} pixels ({100 * n_hole / known.size:.1f}%)."
    detail = (f"{steps_run} step{'s' * (steps_run != 1)} of the {sampler.gamma} schedule (T={sampler.steps}), "
              + (f"context guidance {sampler.guidance:g}"
                 + (" against the weak transformer" if sampler.weak_guidance else "")
                 + (f" ({sampler.guidance_schedule} ramp)" if sampler.guidance_schedule != "constant" else "")
                 + (f" on the first {sampler.guidance_steps} step{'s' * (sampler.guidance_steps != 1)}"
                    if sampler.guidance_steps and sampler.guidance_steps < steps_run else "") + ", "
                 if sampler.guidance else "") +
              (f"token threshold {sampler.token_threshold:g}, " if sampler.token_threshold else "") +
              f"seed {int(settings.seed)}, composite {model.blend if settings.composite else 'off'}; "
              f"took {seconds:.2f} s.")
    return InpaintResult(result, strip, " ".join(notes + [what, detail]), level, seconds=seconds, **base)


# ----------------------------------------------------------------------------- samples
def find_samples(model_dir: str | Path | None = None) -> dict[str, Path]:
    """Bundled sample images: `<model_dir>/samples`, else the default model's samples."""
    from .images import IMAGE_SUFFIXES
    from .model import default_model_dir

    dirs = ([Path(model_dir) / "samples"] if model_dir else []) + [default_model_dir() / "samples"]
    for d in dirs:
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                return {p.stem: p for p in files}
    return {}


# ----------------------------------------------------------------------------- the app

def _gradio():
    try:
        import gradio
    except ImportError:
        raise ImportError("the app needs Gradio: pip install 'maskgit-inpaint[app]'") from None
    return gradio


def _theme():
    gr = _gradio()

    # System fonts only: the default theme would otherwise ask Google Fonts for them.
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])


def build_app(model_dir: str | Path | None = None, device: str = "auto", model=None, precision: str | None = None):
    """The Gradio page. The model is loaded once, here (or passed in as `model`)."""
    gr = _gradio()

    from .masks import GENERATORS
    from .sampling import GUIDANCE_SCHEDULES
    from .schedules import SCHEDULES

    if model is None:
        from .model import load_model

        model, model_dir = load_model(model_dir, device, precision=precision)
    size = model.image_size
    scale = display_scale(size)
    samples = find_samples(model_dir)
    defaults = InpaintSettings.from_model(model)
    out_dir = Path(tempfile.mkdtemp(prefix="maskgit-serve-"))
    model_name = Path(model_dir).name if model_dir else "model"

    def png(array: np.ndarray, name: str = "image") -> str:
        """A PNG file for Gradio to serve. Gradio writes arrays into its cache under a content
        hash and rewrites that file in place when the same picture comes again, which can cut
        short a browser fetching it; a file path is instead copied into the cache atomically."""
        return str(_write_png_once(array, out_dir, name))

    def editor_value(array: np.ndarray, known: np.ndarray | None = None) -> dict:
        bg = png(upscale(array, scale))
        layers = [png(hole_layer(known, scale))] if known is not None else []
        return {"background": bg, "layers": layers, "composite": None}

    def load(source, label: str):
        try:
            prep = prepare_image(source, size)
        except ImageInputError as e:
            gr.Warning(str(e))
            return gr.skip(), gr.skip(), f"⚠ {e}"
        if prep.note:
            gr.Info(prep.note)
        note = prep.note or f"{size}x{size}, used as is."
        return editor_value(prep.array), prep.array, f"{label}: {note} Now paint the hole."

    def on_upload(path):
        if path is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        # The drop zone is emptied again, ready for the next upload.
        return *load(path, f"Uploaded {Path(path).name}"), None

    def on_sample(name):
        if not name or name not in samples:
            return gr.skip(), gr.skip(), gr.skip()
        return load(samples[name], f"Sample {name}")

    def on_generate(image, kind, seed):
        if image is None:
            gr.Warning("Pick a sample or upload an image first.")
            return gr.skip()
        return editor_value(image, generated_known_mask(kind, int(seed or 0), size))

    def on_clear(image):
        return gr.skip() if image is None else editor_value(image)

    def on_inpaint(image, editor, schedule, steps, sweet_spot, choice_temperature, temperature, guidance,
                   guided_steps, seed, composite, guidance_schedule, token_threshold, weak_guidance):
        settings = InpaintSettings.from_ui(schedule, steps, sweet_spot, choice_temperature, temperature, guidance,
                                           guided_steps, seed, composite, guidance_schedule, token_threshold,
                                           weak_guidance)
        res = run_inpaint(model, image, editor, settings)
        {"error": gr.Warning, "warning": gr.Warning}.get(res.level, gr.Info)(res.message)
        if res.result is None:
            return None, None, res.message, gr.update(value=None, interactive=False)
        path = png(res.result, f"inpainted-seed{settings.seed}")
        strip_path = png(res.strip, "steps") if res.strip is not None else None
        return path, strip_path, res.message, gr.update(value=path, interactive=True)

    # delete_cache: Gradio drops its cached uploads and outputs older than an hour, hourly.
    with gr.Blocks(title="MaskGIT inpainting", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## MaskGIT inpainting\nModel `{model_name}` works at {size}x{size} pixels. "
                    "Choose an image, paint the hole with the brush, then press **Inpaint**.")
        image_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    sample = gr.Dropdown(list(samples), value=None, label="Sample", visible=bool(samples),
                                         elem_id="sample")
                    upload = gr.File(label=f"Upload an image (any size, up to {MAX_FILE_SIZE.upper()}; "
                                           "centre-cropped and resized)", type="filepath", height=150,
                                     elem_id="upload")
                editor = gr.ImageEditor(
                    label="Paint the hole", type="numpy", image_mode="RGBA", format="png", sources=(),
                    transforms=(), canvas_size=(size * scale, size * scale), height=size * scale + 120,
                    brush=gr.Brush(default_size=max(2, 3 * scale), colors=[("#ff00ff", 0.6)], color_mode="fixed"),
                    eraser=gr.Eraser(default_size=max(2, 3 * scale)),
                    layers=gr.LayerOptions(allow_additional_layers=False, layers=["hole"]),
                    placeholder="Pick a sample or upload an image", elem_id="editor",
                    elem_classes="pixelated")
                with gr.Row():
                    kind = gr.Dropdown(list(GENERATORS), value="random-walk", label="Generated hole",
                                       elem_id="mask-kind")
                    mask_seed = gr.Number(0, precision=0, label="Hole seed", elem_id="mask-seed")
                    generate = gr.Button("Draw generated hole", elem_id="generate")
                    clear = gr.Button("Clear hole", elem_id="clear")
            with gr.Column(scale=2):
                schedule = gr.Dropdown(list(SCHEDULES), value=defaults.schedule, label="Schedule",
                                       elem_id="schedule")
                steps = gr.Slider(1, 32, value=defaults.steps, step=1, label="Steps (T)", elem_id="steps")
                sweet_spot = gr.Slider(0, 32, value=defaults.sweet_spot or 0, step=1,
                                       label="Sweet spot: stop after this many steps (0 = run all)",
                                       elem_id="sweet-spot")
                choice_t = gr.Slider(0, 10, value=defaults.choice_temperature, step=0.1,
                                     label="Temperature (choice temperature: noise on the confidences)",
                                     elem_id="choice-temperature")
                with gr.Accordion("More", open=False):
                    token_t = gr.Slider(0, 2, value=defaults.temperature, step=0.05,
                                        label="Token sampling temperature (0 = argmax)", elem_id="token-temperature")
                    guidance = gr.Slider(0, 4, value=defaults.guidance, step=0.1,
                                         label="Context guidance (0 = off; above 0 each step costs two passes)",
                                         elem_id="guidance")
                    guided_steps = gr.Slider(0, 32, value=defaults.guidance_steps or 0, step=1,
                                             label="Guided steps: guide only the first K (0 = every step; "
                                                   "fewer is faster)", elem_id="guidance-steps")
                    guidance_ramp = gr.Dropdown(list(GUIDANCE_SCHEDULES), value=defaults.guidance_schedule,
                                                label="Guidance schedule: the same scale on every step, or "
                                                      "rising linearly to it", elem_id="guidance-schedule")
                    token_thr = gr.Slider(0, 0.9375, value=defaults.token_threshold, step=0.0625,
                                          label="Token threshold: regenerate a token when more than this share "
                                                "of its pixels is hole (0 = any hole pixel)",
                                          elem_id="token-threshold")
                    weak = gr.Checkbox(defaults.weak_guidance and model.has_weak_transformer,
                                       label="Guide against the weak transformer (an earlier checkpoint) instead "
                                             "of the model itself", visible=model.has_weak_transformer,
                                       elem_id="weak-guidance")
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
                    composite = gr.Checkbox(True, label="Composite (keep known pixels)", elem_id="composite")
                run = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
                status = gr.Textbox(label="Status", lines=3, interactive=False, elem_id="status")
                result = gr.Image(label=f"Result ({size}x{size})", type="numpy", format="png", interactive=False,
                                  height=size * 4 + 40, buttons=["download"], elem_id="result",
                                  elem_classes="pixelated")
                download = gr.DownloadButton("Download result (PNG)", interactive=False, elem_id="download")
        strip = gr.Image(label="Per step: token mask (top; white = still masked, grey = generated, black = known) "
                               "over the decoded image (bottom); first the input, last the result",
                         type="numpy", format="png", interactive=False, buttons=["download"], elem_id="strip",
                         elem_classes="pixelated")

        upload.upload(on_upload, upload, [editor, image_state, status, upload])
        sample.change(on_sample, sample, [editor, image_state, status])
        generate.click(on_generate, [image_state, kind, mask_seed], editor)
        clear.click(on_clear, image_state, editor)
        run.click(on_inpaint, [image_state, editor, schedule, steps, sweet_spot, choice_t, token_t, guidance,
                               guided_steps, seed, composite, guidance_ramp, token_thr, weak],
                  [result, strip, status, download], concurrency_limit=1, concurrency_id="inpaint")
    # One request runs at a time, the others wait in a bounded queue; no REST shortcut past it.
    demo.queue(default_concurrency_limit=1, max_size=16, api_open=False)
    return demo


def launch_kwargs(host: str = "127.0.0.1", port: int = 7860) -> dict:
    """How `serve` launches: loopback by default, bounded uploads, no sharing, no extras."""
    return dict(server_name=host, server_port=port, share=False, max_file_size=MAX_FILE_SIZE,
                show_error=True, ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
                inbrowser=False, footer_links=[], theme=_theme(), css=CSS)


def serve(model_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, *,
          device: str = "auto", block: bool = True, quiet: bool = False, precision: str | None = None):
    """Load the model once and serve the app until Ctrl+C. With `block=False` it returns the
    running `gr.Blocks` at once (stop it with `.close()`), as the tests do."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"serving on {host}: the app is reachable from other machines and has no login",
                      stacklevel=2)
    demo = build_app(model_dir, device=device, precision=precision)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(host, port))
    if not quiet:
        print(f"MaskGIT inpainting app on {demo.local_url} (Ctrl+C to stop)", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo
