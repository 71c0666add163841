"""`maskgit serve`: a local web app to inpaint one image with a brush-painted hole.

The inpainting itself lives in plain functions (`prepare_image`, `known_from_mask`, `run_inpaint`)
that need neither Gradio nor a browser; `page.build_app` wires them to a page. Gradio is imported
only by `build_app`/`serve`, so the rest works without it.
"""
from .inputs import (EDITOR_SIDE, MAX_FILE_SIZE, MAX_PIXELS, MAX_UPLOAD_BYTES, ImageInputError, PreparedImage,
                     centre_box, display_scale, generated_known_mask, hole_layer, known_from_mask, prepare_image,
                     upscale)
from .page import CSS, build_app, launch_kwargs, serve
from .run import InpaintResult, find_samples, run_inpaint, settings_from_ui

__all__ = ["CSS", "EDITOR_SIDE", "MAX_FILE_SIZE", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "ImageInputError", "InpaintResult",
           "PreparedImage", "build_app", "centre_box", "display_scale", "find_samples", "generated_known_mask",
           "hole_layer", "known_from_mask", "launch_kwargs", "prepare_image", "run_inpaint", "serve",
           "settings_from_ui", "upscale"]
