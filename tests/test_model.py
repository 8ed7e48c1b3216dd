import pytest
import torch

from vaecore import model


@pytest.mark.parametrize("arch", ["compact", "seed", "mlp"])
@pytest.mark.parametrize("latent", [1, 2, 3, 16])
def test_presets_reconstruct_28x28_images_in_the_unit_range(arch, latent):
    torch.manual_seed(0)
    m = model.build(arch, latent).eval()
    x = torch.rand(5, 1, 28, 28)
    logits, mu, log_var = m(x)
    assert logits.shape == (5, 1, 28, 28)
    assert mu.shape == log_var.shape == (5, latent)
    x_hat = m.decode(mu)
    assert x_hat.shape == (5, 1, 28, 28) and x_hat.min() >= 0 and x_hat.max() <= 1
    assert torch.allclose(x_hat, torch.sigmoid(m.decode_logits(mu)))


def test_parameter_counts_follow_the_architecture():
    # compact encoder: conv 1->32, 32->64, 64->64, 64->64, each with a BatchNorm (weight + bias)
    enc = (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + 2 * (64 * 64 * 9 + 64) + 2 * (32 + 3 * 64)
    heads = 2 * (3136 * 3 + 3)  # mu and log_var from the 7 * 7 * 64 = 3136 flattened features
    dense = 3 * 3136 + 3136
    dec = 2 * (64 * 64 * 9 + 64) + (64 * 32 * 9 + 32) + (32 * 1 * 9 + 1) + 2 * (64 + 64 + 32)
    assert model.parameter_count(model.build("compact", 3)) == enc + heads + dense + dec == 217415
    # the seed's flatten is 14 * 14 * 4 = 784 features, so each head holds 784 * d + d
    seed3, seed4 = (model.parameter_count(model.build("seed", d)) for d in (3, 4))
    assert seed4 - seed3 == 2 * (784 + 1) + 3136
    # mlp: 784-400 encoder, heads 400 -> d, decoder d-400-784 (pytorch/examples' VAE at latent d)
    d = 32
    mlp = (784 * 400 + 400) + 2 * (400 * d + d) + (d * 400 + 400) + (400 * 784 + 784)
    assert model.parameter_count(model.build("mlp", d)) == mlp


def test_conv_presets_keep_the_parameter_names_of_older_model_files():
    # the hidden dense layers added for "mlp" must not rename what compact and seed files hold
    names = set(model.build("compact", 3).state_dict())
    assert {"dense.weight", "dense.bias", "mu.weight", "decoder.3.weight"} <= names
    assert not any(n.startswith("encoder.5") for n in names)  # 4 conv blocks + Flatten, no more


def test_the_config_offers_exactly_the_model_presets():
    from vaecore import config

    assert sorted(config.CHOICES["model.arch"]) == sorted(model.ARCHS)


def test_forward_flops_are_counted_and_seed_is_much_heavier():
    compact = model.forward_flops(model.build("compact", 3))
    seed = model.forward_flops(model.build("seed", 3))
    assert 20e6 < compact < 60e6
    assert seed > 20 * compact
    # mlp at latent 3: 2 * (784*400 + 400*3 + 400*3 ... ) multiply-adds, about 1.26 MFLOPs
    mlp = model.forward_flops(model.build("mlp", 3))
    assert mlp == 2 * (784 * 400 + 2 * 400 * 3 + 3 * 400 + 400 * 784)


def test_reparameterize_uses_the_given_noise():
    mu, log_var = torch.tensor([[1.0, -2.0]]), torch.log(torch.tensor([[4.0, 0.25]]))
    z = model.VAE.reparameterize(mu, log_var, torch.tensor([[1.0, 2.0]]))
    assert torch.allclose(z, torch.tensor([[3.0, -1.0]]))


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="choose one of seed, compact"):
        model.build("resnet", 3)
