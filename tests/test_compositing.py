"""Putting known pixels back: plain paste and seamless (Poisson) cloning."""
import pytest
import torch

from maskgit_inpaint.compositing import BLENDS, check_blend, paste_known, poisson_paste


def scene(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy, 0.5 + 0.2 * xx * yy])[None].repeat(b, 1, 1, 1)
    images = (base + 0.05 * torch.rand(b, 3, size, size, generator=g)).clamp(0, 1)
    known = torch.ones(b, size, size, dtype=torch.bool)
    known[:, 8:20, 6:22] = False  # an interior hole
    known[1, 24:30, 2:9] = False  # a second one in the second image
    return images, known


def test_known_pixels_are_the_inputs_for_every_blend():
    images, known = scene()
    decoded = torch.rand_like(images)
    for blend in BLENDS:
        out = paste_known(decoded, images, known, blend)
        k = known[:, None].expand_as(images)
        assert torch.equal(out[k], images[k])


def test_paste_is_a_plain_paste():
    images, known = scene()
    decoded = torch.rand_like(images)
    assert torch.equal(paste_known(decoded, images, known, "paste"), torch.where(known[:, None], images, decoded))


def test_poisson_removes_a_colour_offset_and_keeps_the_content():
    # The decoder's typical error: the right content, shifted in colour by a different amount
    # per image and channel. Seamless cloning must give back the content without the shift.
    images, known = scene()
    texture = 0.1 * torch.sin(torch.arange(32.0))[None, None, :, None] * torch.ones_like(images)
    offset = torch.tensor([[0.08, -0.05, 0.03], [-0.1, 0.06, 0.0]])[:, :, None, None]
    truth = torch.where(known[:, None], images, (images + texture).clamp(0, 1))
    decoded = truth + offset
    out = poisson_paste(decoded, images, known)
    hole = ~known[:, None].expand_as(images)
    assert (out - truth)[hole].abs().max() < 1e-4
    pasted = paste_known(decoded, images, known, "paste")
    assert (pasted - truth)[hole].abs().mean() > 0.03  # the plain paste keeps the shift


def test_poisson_is_identity_where_the_decoder_is_exact_and_smooths_the_seam():
    images, known = scene()
    assert torch.allclose(poisson_paste(images, images, known), images, atol=1e-6)
    # a decoded image off by a smooth ramp: the jump across the hole's border shrinks
    yy = torch.linspace(-0.1, 0.1, 32)[None, None, :, None].expand_as(images)
    decoded = images + 0.1 + yy
    def seam(x):  # mean absolute jump between horizontally adjacent known/hole pixels
        k = known[:, None].expand_as(x)
        border = k[..., :, 1:] != k[..., :, :-1]
        return (x[..., :, 1:] - x[..., :, :-1]).abs()[border].mean()
    assert seam(poisson_paste(decoded, images, known)) < 0.3 * seam(paste_known(decoded, images, known, "paste"))
    assert seam(poisson_paste(decoded, images, known)) < 1.5 * seam(images)


def test_nothing_to_fill_and_bad_names():
    images, _ = scene()
    all_known = torch.ones(2, 32, 32, dtype=torch.bool)
    assert torch.equal(paste_known(torch.rand_like(images), images, all_known), images)
    assert check_blend("poisson") == "poisson"
    with pytest.raises(ValueError, match="blend must be one of poisson, paste"):
        paste_known(images, images, all_known, "feather")


def test_an_all_hole_image_keeps_its_decode():
    # nothing is known (generation from scratch): there is no border to match
    images, known = scene()
    known[0] = False
    decoded = torch.rand_like(images)
    out = paste_known(decoded, images, known)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0], decoded[0])
    assert torch.equal(out[1][known[1].expand(3, -1, -1)], images[1][known[1].expand(3, -1, -1)])
