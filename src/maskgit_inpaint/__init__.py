"""maskgit-inpaint: image inpainting with a Masked Generative Image Transformer."""
__version__ = "0.1.0"

from .model import MaskGIT, InpaintOutput  # noqa: E402
from .sampling import SamplerConfig, inpaint_tokens  # noqa: E402
from .schedules import SCHEDULES, gamma  # noqa: E402

__all__ = ["MaskGIT", "InpaintOutput", "SamplerConfig", "inpaint_tokens", "SCHEDULES", "gamma", "__version__"]
