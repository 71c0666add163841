"""maskgit-inpaint: image inpainting with a Masked Generative Image Transformer."""
__version__ = "0.1.0"

# The public names load on first use (PEP 562), so that `maskgit --help` does not wait for torch.
_EXPORTS = {
    "InpaintPipeline": "pipeline", "InpaintSettings": "settings", "SamplerConfig": "settings",
    "MaskGIT": "model", "InpaintOutput": "pipeline", "inpaint_tokens": "sampling",
    "SCHEDULES": "schedules", "gamma": "schedules",
}
__all__ = list(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'maskgit_inpaint' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
