"""The Gradio page (`maskgit serve`): paint a hole, watch it fill. Loopback by default, bounded
uploads, one request at a time; no analytics, local fonts. Its inpainting controls are made from
the InpaintSettings fields."""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..masks import GENERATORS
from ..pipeline import InpaintPipeline
from ..settings import InpaintSettings
from .inputs import (MAX_FILE_SIZE, ImageInputError, _write_png_once, display_scale, generated_known_mask,
                     hole_layer, prepare_image, upscale)
from .run import find_samples, run_inpaint, settings_from_ui

# Set before Gradio is imported anywhere in this process: no usage analytics, no version check.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

CSS = """
.pixelated img { image-rendering: pixelated; }
#result img { width: 100%; height: 100%; object-fit: contain; }
#strip .image-frame { width: 100%; padding-top: 2em; }
#strip img { width: 100%; height: auto; max-height: none; object-fit: contain; }
#status textarea { font-family: ui-monospace, monospace; }
"""


def settings_controls(gr, defaults: InpaintSettings, model) -> dict:
    """One control per InpaintSettings field (elem_id: the flag's name): a dropdown for choices,
    a checkbox for a switch, a slider in its `ui` range; the common ones first, the rest under
    "More". Switches a model cannot use (weak guidance, decode known) are hidden."""
    hidden = {"weak_guidance": not model.has_weak_transformer, "decode_known": not model.conditioned_decoder}
    made = {}

    def make(f):
        v = getattr(defaults, f.name)
        elem = f.name.replace("_", "-")
        label = f"{f.name.replace('_', ' ').capitalize()}: {f.metadata['help']}"
        choices, ui = f.metadata.get("choices"), f.metadata.get("ui")
        if choices:
            return gr.Dropdown(list(choices), value=v, label=label, elem_id=elem)
        if isinstance(v, bool):
            return gr.Checkbox(bool(v) and not hidden.get(f.name), label=label, visible=not hidden.get(f.name),
                               elem_id=elem)
        if ui:
            return gr.Slider(ui[0], ui[1], value=v or 0, step=ui[2], label=label + (" (0 = none)" if ui[0] == 0
                             and str(f.type).endswith("None") else ""), elem_id=elem)
        return gr.Number(v, label=label, elem_id=elem)

    common = [f for f in fields(InpaintSettings) if f.metadata.get("common")]
    rest = [f for f in fields(InpaintSettings) if not f.metadata.get("common")]
    for f in common:
        made[f.name] = make(f)
    with gr.Accordion("More", open=False):
        for f in rest:
            made[f.name] = make(f)
    return made

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

    pipe = InpaintPipeline(model) if model is not None else \
        InpaintPipeline.from_pretrained(model_dir, device, precision=precision)
    model_dir = model_dir or pipe.model_dir
    size = pipe.size
    scale = display_scale(size)
    samples = find_samples(model_dir)
    defaults = pipe.settings
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

    names = [f.name for f in fields(InpaintSettings)]

    def on_inpaint(image, editor, seed, composite, *values):
        try:
            settings = settings_from_ui(defaults, **dict(zip(names, values)))
        except ValueError as e:
            gr.Warning(str(e))
            return None, None, str(e), gr.update(value=None, interactive=False)
        res = run_inpaint(pipe, image, editor, settings, seed=int(seed or 0), composite=bool(composite))
        {"error": gr.Warning, "warning": gr.Warning}.get(res.level, gr.Info)(res.message)
        if res.result is None:
            return None, None, res.message, gr.update(value=None, interactive=False)
        path = png(res.result, f"inpainted-seed{int(seed or 0)}")
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
                controls = settings_controls(gr, defaults, pipe.model)
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
        run.click(on_inpaint, [image_state, editor, seed, composite, *(controls[n] for n in names)],
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

