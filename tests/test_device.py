"""The ``device`` option: CPU runs unchanged, clear errors, CUDA where there is one."""

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def groups(n=120):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, 2))
    out = {f"g{i}": z @ rng.normal(size=(2, 3)) + 0.2 * rng.normal(size=(n, 3)) for i in range(3)}
    out["g2"][:20] = np.nan
    return out


def test_device_cpu_repeats_the_default_run_bit_for_bit():
    a = FactVAE(latent_dim=2, lam=0.1).fit(groups(), epochs=3, progress=False)
    b = FactVAE(latent_dim=2, lam=0.1, device="cpu").fit(groups(), epochs=3, progress=False)
    for (k, va), vb in zip(a.model_.state_dict().items(), b.model_.state_dict().values()):
        assert torch.equal(va, vb), k
    assert a.history_ == b.history_


@pytest.mark.parametrize("device", ["gpu0", 3.5, "meta"])
def test_unknown_devices_are_refused_with_what_works(device):
    with pytest.raises(ValueError, match="device"):
        FactVAE(device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_says_to_use_the_cpu():
    with pytest.raises(ValueError, match="use device='cpu'"):
        FactVAE(device="cuda")


def test_blocks_of_adjacent_groups_are_views_of_the_one_data_matrix():
    data = GroupedData(groups())
    block = data.block([0, 1, 2])
    assert block.shape == (120, 3, 3) and block.untyped_storage().data_ptr() == (
        data.matrix.untyped_storage().data_ptr()
    )
    reordered = data.block([2, 0])
    assert torch.equal(reordered[:, 0], data.values[2]) and torch.equal(
        reordered[:, 1], data.values[0]
    )
    with pytest.raises(ValueError, match="differ in width"):
        GroupedData({"a": np.ones((3, 2)), "b": np.ones((3, 1))}).block([0, 1])


@cuda
def test_fit_predict_save_and_load_on_cuda(tmp_path):
    vae = FactVAE(latent_dim=2, lam=0.1, device="cuda").fit(groups(), epochs=3, progress=False)
    assert all(p.is_cuda for p in vae.model_.parameters())
    assert all(p.is_cuda for p in vae.guide_.parameters())
    out = vae.impute(groups())
    assert isinstance(out["g2"], np.ndarray) and np.isfinite(out["g2"]).all()
    cpu = FactVAE(latent_dim=2, lam=0.1).fit(groups(), epochs=3, progress=False)
    np.testing.assert_allclose(out["g2"], cpu.impute(groups())["g2"], atol=0.2)
    vae.save(tmp_path / "m.factvae")
    back = FactVAE.load(tmp_path / "m.factvae")  # onto the CPU
    assert not any(p.is_cuda for p in back.model_.parameters())
    np.testing.assert_allclose(back.impute(groups())["g2"], out["g2"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "options",
    [{"inference": "poe"}, {"inference": "poe", "phi_inference": "variational"}],
    ids=["prox", "variational"],
)
def test_a_training_step_stays_on_the_model_device_without_host_reads(options):
    """On the ``meta`` device (shapes, no data) a CPU tensor mixed into a computation raises,
    as it would on CUDA, and so does any read of a value back to the host: the loss, its
    gradients and the Adam + prox update (also the relaxed refit's) must run without either.
    (The JMVAE+ mixture baseline expands rows by the mask's contents, a read by design.)"""
    import copy

    import pyro

    from pyro_factvae.infer.objective import objective_for
    from pyro_factvae.infer.optim import Optimizers

    rng = np.random.default_rng(0)
    groups = {
        "a": rng.normal(size=(40, 3)),
        "b": rng.integers(0, 2, size=(40, 4)).astype(float),
        "lab": np.eye(3)[rng.integers(0, 3, 40)],
    }
    groups["a"][:5] = np.nan
    liks = {"a": "normal", "b": "bernoulli", "lab": "categorical"}
    vae = FactVAE(latent_dim=2, lam=0.1, likelihood=liks, **options)
    vae.fit(groups, epochs=1, progress=False)
    model, guide = copy.deepcopy((vae.model_, vae.guide_))  # one copy: the guide reads the model
    model.to("meta"), guide.to("meta")
    optimizers = Optimizers(model, guide, lr=1e-2, phi_lr=1e-2, phi_optim="adam")
    objective = objective_for(model, guide, guide.phi_mode, GroupedData(groups), 1 / 40)
    with pyro.validation_enabled(False):
        blocks, mask, cells = objective.batch(torch.arange(16))
        assert mask.device.type == "meta"
        keep = torch.ones_like(mask)
        args, kwargs = guide.experts.training_args(blocks, mask, keep, cells)
        terms = objective(*args, **kwargs)
        assert terms.loss.device.type == "meta" and terms.data.device.type == "meta"
        terms.loss.backward()
        for relaxed in (False, True):
            optimizers.set_lam(0.1, relaxed=relaxed)
            optimizers.step()
    assert all(p.device.type == "meta" for p in guide.Phi)
