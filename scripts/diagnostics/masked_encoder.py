"""How many known tokens of a masked image (smooth hole fill) differ from the full image's tokens,
for the encoder as it is and for variants that leave the hole out of their GroupNorm statistics
("norm") and attention keys ("attn"; a 16x16 position is kept when more than `thr` of it is known).
Default model, first 256 val images. Run from the repository root after
`maskgit masks --kind random-walk --seed 0 --count 747 --out out/val_masks`; prints one line per variant."""
import sys, torch, torch.nn.functional as F
from maskgit_inpaint.model import load_model
from maskgit_inpaint.experiments import load_eval_set
from maskgit_inpaint.masks import harmonic_fill, pixel_to_token_mask
import maskgit_inpaint.tokenizer as tk

torch.set_num_threads(1)
model, _ = load_model(None, device="cpu")
names, imgs, known = load_eval_set("../shared/datasets/cat-faces-64/val", "out/val_masks", 64, 256)
STATE = {"w": None, "norm": False, "attn": False}

def weight_at(h):
    w = STATE["w"]
    return F.adaptive_avg_pool2d(w, h) if w.shape[-1] != h else w

orig_gn = tk.GroupNorm.forward
def gn_forward(self, x):
    if STATE["w"] is None or not STATE["norm"]:
        return orig_gn(self, x)
    g = self.gn.num_groups; b, c, h, w_ = x.shape
    wt = weight_at(h)  # b,1,h,w
    xg = x.reshape(b, g, c // g, h, w_)
    wg = wt.reshape(b, 1, 1, h, w_)
    den = wg.sum((2, 3, 4), keepdim=True) * (c // g)
    mean = (xg * wg).sum((2, 3, 4), keepdim=True) / den
    var = (((xg - mean) ** 2) * wg).sum((2, 3, 4), keepdim=True) / den
    y = ((xg - mean) / torch.sqrt(var + self.gn.eps)).reshape(b, c, h, w_)
    return y * self.gn.weight[None, :, None, None] + self.gn.bias[None, :, None, None]
tk.GroupNorm.forward = gn_forward

orig_nl = tk.NonLocalBlock.forward
def nl_forward(self, x):
    if STATE["w"] is None or not STATE["attn"]:
        return orig_nl(self, x)
    b, c, h, w_ = x.shape
    y = self.norm(x)
    q, k, v = (m(y).reshape(b, 1, c, h * w_).transpose(-1, -2) for m in (self.q, self.k, self.v))
    keep = (weight_at(h).reshape(b, 1, 1, h * w_) > STATE["thr"])
    keep = keep | ~keep.any(-1, keepdim=True)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    return x + self.proj_out(a.transpose(-1, -2).reshape(b, c, h, w_))
tk.NonLocalBlock.forward = nl_forward

with torch.no_grad():
    full = model.encode(imgs)
    x = harmonic_fill(model.normalize(imgs), known)
    unk = pixel_to_token_mask(known, 16)
    # distance of each known token to the nearest unknown one (Chebyshev)
    near = F.max_pool2d(unk[:, None].float(), 3, 1, 1)[:, 0] > 0
    for name, norm, attn, thr in [("base", 0, 0, 0), ("norm", 1, 0, 0), ("attn", 0, 1, 0.99), ("both", 1, 1, 0.99), ("both.5", 1, 1, 0.5)]:
        STATE.update(w=known[:, None].float(), norm=bool(norm), attn=bool(attn), thr=thr)
        t = model.tokenizer.encode(x)
        STATE["w"] = None
        d = (t != full)
        kn = ~unk; far = kn & ~near
        print(name, "known differ %.3f" % (d[kn].float().mean()), "far differ %.3f" % (d[far].float().mean()), flush=True)
