"""One inpainting request of the app, without Gradio: the page's values to settings, the pipeline
call, and a message saying what was done."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..images import IMAGE_SUFFIXES
from ..config import default_model_dir
from ..pipeline import InpaintPipeline
from ..settings import InpaintSettings
from ..visualize import step_strip
from .inputs import ImageInputError, known_from_mask, prepare_image

# fields whose slider's 0 means "not set": run every step, guide every step
ZERO_IS_NONE = ("sweet_spot", "guidance_steps")


def settings_from_ui(base: InpaintSettings, **values) -> InpaintSettings:
    """`base` with the page's control values (by field name): 0 is "not set" for the fields of
    ZERO_IS_NONE, an empty number box keeps `base`'s value; checked."""
    kinds = {f.name: str(f.type).replace(" ", "") for f in fields(InpaintSettings)}
    changes = {}
    for name, v in values.items():
        if v is None or name not in kinds:
            continue
        kind = kinds[name]
        if name in ZERO_IS_NONE and not v:
            changes[name] = None
            continue
        changes[name] = {"int": int, "int|None": int, "float": float, "bool": bool}.get(kind, str)(v)
    none = [n for n, v in changes.items() if v is None]
    s = base.override(**{n: v for n, v in changes.items() if v is not None})
    if none:
        s = replace(s, **{n: None for n in none})
        s.validate()
    return s


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


def run_inpaint(pipe, image: Any, mask: Any, settings: InpaintSettings | None = None, seed: int = 0,
                composite: bool = True) -> InpaintResult:
    """Inpaint one image with a painted or given mask through `pipe` (an InpaintPipeline, or a
    model to make one of), as every other door does. No Gradio, no browser.

    `image`: (H, W, 3) uint8 array, PIL image, path or bytes, of any size (centre-cropped and
    resized to the model's size, with a note in the message). `mask`: the editor's value,
    a bool known mask (True = known) or an RGBA brush layer; see `known_from_mask`.
    Bad input gives a result of None and a message saying why, never an exception.
    """
    pipe = pipe if isinstance(pipe, InpaintPipeline) else InpaintPipeline(pipe)
    size = pipe.size
    if image is None:
        return InpaintResult(None, None, "No image yet: pick a sample or upload an image.", "error")
    try:
        prepared = prepare_image(image, size)
        known = known_from_mask(mask, size, prepared)
        sampler = pipe.resolve(settings)
    except ImageInputError as e:
        return InpaintResult(None, None, str(e).rstrip(".") + ".", "error")
    except ValueError as e:
        if "weak transformer" in str(e):
            return InpaintResult(None, None, "Weak guidance needs a weak transformer and this model has none: "
                                             "untick it.", "error")
        return InpaintResult(None, None, str(e).rstrip(".") + ".", "error")
    notes = [prepared.note] if prepared.note else []
    base = dict(known=known, image=prepared.array, notes=notes)

    n_hole = int((~known).sum())
    if n_hole == 0:
        msg = "The mask is empty: paint the hole with the brush (or draw a generated one). Returned the input unchanged."
        return InpaintResult(prepared.array.copy(), None, " ".join(notes + [msg]), "warning", **base)

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = pipe.run([prepared.array], [known], seed=int(seed), settings=sampler, composite=bool(composite),
                         return_steps=True, names=["The mask"])
    notes += [str(w.message).replace("--invert-mask / ", "") for w in caught
              if "% hole" in str(w.message) and n_hole != known.size]
    out, result = batch.output, batch.images[0]
    strip = step_strip(batch.inputs01, batch.known, out, size)[0]
    seconds = time.perf_counter() - t0

    steps_run = len(out.step_masks) - 2 * sampler.critic_rounds  # a critic round adds two strip columns
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
              (f"{sampler.critic_rounds} critic round{'s' * (sampler.critic_rounds != 1)}, "
               if sampler.critic_rounds else "") +
              f"seed {int(seed)}, composite {sampler.blend if composite else 'off'}; "
              f"took {seconds:.2f} s.")
    return InpaintResult(result, strip, " ".join(notes + [what, detail]), level, seconds=seconds, **base)


# ----------------------------------------------------------------------------- samples
def find_samples(model_dir: str | Path | None = None) -> dict[str, Path]:
    """Bundled sample images: `<model_dir>/samples`, else the default model's samples."""
    dirs = ([Path(model_dir) / "samples"] if model_dir else []) + [default_model_dir() / "samples"]
    for d in dirs:
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                return {p.stem: p for p in files}
    return {}


