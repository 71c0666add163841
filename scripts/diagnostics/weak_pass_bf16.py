"""Any `maskgit` command with only the weak transformer's pass (the free prediction of the
guidance against the weak transformer) in bf16 and the model's own pass as `--precision` says
(fp32 on CPU by default). It asks whether the guidance's second pass can run in bf16 on a
CPU with AVX-512 BF16 without the FID cost of `--precision bf16` (see the default model's
MODEL_CARD.md, "Metrics of the shipped model").
usage: python scripts/diagnostics/weak_pass_bf16.py sweep --images ... --masks ... --out ...
Do not pass --token-cache: its key does not know of this change, so it would serve fp32 tokens."""
import sys

from maskgit_inpaint import model as _model
from maskgit_inpaint.cli import main

_logits_fn = _model.MaskGIT.logits_fn


def _weak_in_bf16(self, precision=None, weak=False):
    return _logits_fn(self, "bf16" if weak else precision, weak)


_model.MaskGIT.logits_fn = _weak_in_bf16
if "--token-cache" in sys.argv:
    sys.exit("weak_pass_bf16.py: --token-cache would serve tokens sampled without this change; leave it out")
sys.exit(main(sys.argv[1:]))
