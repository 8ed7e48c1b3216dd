from dataclasses import asdict

import pytest

from vaecore import config
from vaecore.config import ConfigError


def test_seed_named_config_is_the_write_ups_chosen_run():
    cfg = config.named("seed")
    assert (cfg.model.arch, cfg.model.latent_dim) == ("seed", 3)
    assert (cfg.loss.recon_multiplier, cfg.loss.kl_multiplier) == (5000.0, 1.0)
    assert cfg.train.scheduler != "none"


def test_toml_round_trip_gives_the_same_config(tmp_path):
    cfg = config.load("seed", ["model.latent_dim=7", "loss.likelihood=bce", "data.download=true"])
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml(cfg))
    assert config.load(path) == cfg


def test_toml_base_and_tables_are_applied(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('base = "seed"\n[train]\nepochs = 4\nlr = 3e-4\n')
    cfg = config.load(path)
    assert cfg.model.arch == "seed" and cfg.train.epochs == 4 and cfg.train.lr == 3e-4


def test_overrides_keep_the_defaults_type():
    cfg = config.load(
        "default",
        [
            "train.epochs=1e1",
            "loss.recon_multiplier=500",
            "data.download=yes",
            "resources.gpus_per_worker=0.25",
        ],
    )
    assert cfg.train.epochs == 10 and isinstance(cfg.train.epochs, int)
    assert cfg.loss.recon_multiplier == 500.0 and isinstance(cfg.loss.recon_multiplier, float)
    assert cfg.data.download is True and cfg.resources.gpus_per_worker == 0.25


def test_dict_round_trip_crosses_the_ray_boundary():
    cfg = config.load("seed", ["train.epochs=3"])
    assert config.from_dict(asdict(cfg)) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("model.arch=resnet", "choose one of ('compact', 'seed')"),
        ("train.scheduler=linear", "choose one of ('plateau', 'cosine', 'step', 'none')"),
        ("train.epochs=2.5", "train.epochs must be a int"),
        ("train.epochs=0", "train.epochs must be > 0"),
        ("data.download=maybe", "data.download must be true or false"),
        ("train.lr_factor=2", "train.lr_factor must be between 0 and 1"),
        ("latent_dim", "must look like key=value"),
        ("loss.kl_multiplier=-1", "loss.kl_multiplier must be >= 0"),
        ("train.precision=fp16", "train.precision = 'fp16' is not allowed; choose one of ('fp32', 'bf16')"),
        ("train.channels_last=maybe", "train.channels_last must be true or false"),
    ],
)
def test_bad_overrides_name_the_key_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load("default", [override])


def test_bad_toml_files_are_rejected_with_the_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlatent_dim = 3")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        config.load(bad)
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('[model]\nlatent_dim = "three"\n')
    with pytest.raises(ConfigError, match="model.latent_dim must be a int"):
        config.load(wrong_type)
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown named config 'sed'"):
        config.load("sed")


def test_strings_with_quotes_and_backslashes_survive_the_toml_round_trip(tmp_path):
    cfg = config.load("default", ['data.dir=C:\\data "fm"'])
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml(cfg))
    assert config.load(path).data.dir == 'C:\\data "fm"'


def test_a_config_written_before_a_key_existed_is_the_same_as_one_with_its_default():
    now = asdict(config.load("default", ["train.epochs=3"]))
    old = {section: dict(values) for section, values in now.items()}
    del old["train"]["precision"], old["train"]["channels_last"]  # a checkpoint from before them
    assert config.diff(old, now) == []
    bf16 = asdict(config.load("default", ["train.epochs=3", "train.precision=bf16"]))
    assert config.diff(old, bf16) == ["train.precision: '(absent)' -> 'bf16'"]
    assert config.diff(now, old) == [
        "train.channels_last: False -> '(absent)'",
        "train.precision: 'fp32' -> '(absent)'",
    ]
