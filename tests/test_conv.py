import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE
from pyro_factvae.config import ConvSpec
from pyro_factvae.datasets.images import quadrant_data
from pyro_factvae.module.nets import BlockDecoder, BlockEncoder


def test_grouped_convolutions_keep_groups_apart():
    spec = ConvSpec((1, 8, 8), width=4)
    enc = BlockEncoder(3, 64, [6], latent_dim=2, conv=spec)
    dec = BlockDecoder(3, 64, width=5, hidden=[], conv=spec)
    x = torch.randn(4, 3, 64)
    bumped = x.clone()
    bumped[:, 1] += 1.0
    v_t = torch.randn(3, 6, 2)
    mu, prec = enc(x, v_t, torch.tensor(1.0))
    mu2, _ = enc(bumped, v_t, torch.tensor(1.0))
    assert mu.shape == prec.shape == (4, 3, 2)
    changed = (mu2 - mu).abs().sum((0, 2))
    assert changed[1] > 0 and changed[0] == 0 and changed[2] == 0
    w = torch.randn(3, 5, 2)
    out = dec(torch.randn(7, 4, 2), w)  # leading sample axis
    assert out.shape == (7, 4, 3, 64)


@pytest.mark.parametrize("shape", [(1, 6, 6), (1, 8, 16), (1, 4, 4), (0, 8, 8)])
def test_conv_spec_rejects_shapes_that_do_not_halve_to_four(shape):
    with pytest.raises(ValueError, match="8 \\* 2\\*\\*n|positive"):
        FactVAE(image_shape=shape)


def test_conv_factvae_fits_images_and_rejects_wrong_widths():
    rng = np.random.default_rng(0)
    images = rng.random((48, 16, 16)).astype(np.float32)
    data = quadrant_data(images, missing=0.25, seed=0)  # 8x8 quadrants
    vae = FactVAE(latent_dim=3, image_shape=(1, 8, 8), conv_width=4, encoder_width=8)
    vae.fit(data, epochs=2, batch_size=16, progress=False)
    assert np.isfinite(vae.history_).all()
    out = vae.reconstruct(data, given=["top_left"], targets=["bottom_right"], num_samples=2)
    assert out["bottom_right"].shape == (48, 64)
    with pytest.raises(ValueError, match="group 'top_left' has 16 features"):
        FactVAE(image_shape=(1, 8, 8)).fit(quadrant_data(images[:, :8, :8]), epochs=1)
