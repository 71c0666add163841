"""maskgit-inpaint: image inpainting with a Masked Generative Image Transformer."""
__version__ = "0.1.0"

from .model import InpaintOutput, MaskGIT  # noqa: E402
from .pipeline import InpaintPipeline  # noqa: E402
from .sampling import SamplerConfig, inpaint_tokens  # noqa: E402
from .schedules import SCHEDULES, gamma  # noqa: E402
from .settings import InpaintSettings  # noqa: E402

__all__ = ["InpaintPipeline", "InpaintSettings", "MaskGIT", "InpaintOutput", "SamplerConfig", "inpaint_tokens",
           "SCHEDULES", "gamma", "__version__"]
