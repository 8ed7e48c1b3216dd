import re
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
        ("model.arch=resnet", "choose one of ('compact', 'seed', 'mlp')"),
        ("train.scheduler=linear", "choose one of ('plateau', 'cosine', 'step', 'none')"),
        ("train.epochs=2.5", "train.epochs must be a int"),
        ("train.epochs=0", "train.epochs must be > 0"),
        ("data.download=maybe", "data.download must be true or false"),
        ("train.lr_factor=2", "train.lr_factor must be between 0 and 1"),
        ("latent_dim", "must look like key=value"),
        ("loss.kl_multiplier=-1", "loss.kl_multiplier must be >= 0"),
        (
            "train.precision=fp16",
            "train.precision = 'fp16' is not allowed; choose one of ('fp32', 'bf16', 'auto')",
        ),
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


# --- every validation rule, one test that fails without it ----------------------------------------


# The rules as the tests state them, written out here (not read from vaecore.config), so dropping
# a key from a list in validate() fails its case instead of silently removing it.
CHOICES = {
    "model.arch": ("compact", "seed", "mlp"),
    "loss.likelihood": ("mse", "bce", "cb"),
    "train.scheduler": ("plateau", "cosine", "step", "none"),
    "train.precision": ("fp32", "bf16", "auto"),
}
POSITIVE = [
    "model.latent_dim",
    "train.epochs",
    "train.batch_size",
    "train.lr",
    "resources.workers",
    "loss.recon_multiplier",
]
NON_NEGATIVE = [
    "loss.kl_multiplier",
    "train.grad_clip",
    "train.threads",
    "data.train_per_class",
    "data.test_per_class",
    "resources.cpus_per_worker",
    "resources.gpus_per_worker",
    "train.seed",
]


def rejects(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load("default", overrides)


@pytest.mark.parametrize("key", CHOICES)
def test_each_choice_key_refuses_a_value_outside_its_list(key):
    rejects([f"{key}=nope"], f"{key} = 'nope' is not allowed; choose one of {CHOICES[key]}")
    for allowed in CHOICES[key]:
        assert config.flatten(asdict(config.load("default", [f"{key}={allowed}"])))[key] == allowed


@pytest.mark.parametrize("key", POSITIVE)
def test_each_positive_key_refuses_zero_and_names_itself(key):
    rejects([f"{key}=0"], f"{key} must be > 0")


@pytest.mark.parametrize("key", NON_NEGATIVE)
def test_each_non_negative_key_refuses_minus_one_accepts_zero_and_names_itself(key):
    rejects([f"{key}=-1"], f"{key} must be >= 0")
    assert config.flatten(asdict(config.load("default", [f"{key}=0"])))[key] == 0


@pytest.mark.parametrize("factor, ok", [("0", False), ("1", False), ("-0.5", False), ("0.99", True)])
def test_lr_factor_lies_strictly_between_0_and_1(factor, ok):
    if ok:
        assert config.load("default", [f"train.lr_factor={factor}"]).train.lr_factor == float(factor)
    else:
        rejects([f"train.lr_factor={factor}"], "train.lr_factor must be between 0 and 1")


def test_the_batch_must_give_every_worker_at_least_one_image():
    rejects(["resources.workers=4", "train.batch_size=3"], "train.batch_size (3) must be at least resources")
    assert config.load("default", ["resources.workers=4", "train.batch_size=4"]).train.batch_size == 4


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e999"])
def test_floats_must_be_finite_from_the_command_line(text):
    rejects([f"train.lr={text}"], "train.lr must be a finite number")


def test_floats_must_be_finite_in_a_toml_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\ngrad_clip = inf\n")
    with pytest.raises(ConfigError, match="train.grad_clip must be a finite number"):
        config.load(path)


@pytest.mark.parametrize(
    "text, value",
    [(t, True) for t in ("true", "1", "yes", "TRUE", "Yes")]
    + [(t, False) for t in ("false", "0", "no", "False", "NO")],
)
def test_booleans_accept_true_1_yes_and_false_0_no_in_any_case(text, value):
    assert config.load("default", [f"data.download={text}"]).data.download is value


def test_a_toml_integer_is_not_a_boolean_and_a_boolean_is_not_a_number(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[data]\ndownload = 1\n")
    with pytest.raises(ConfigError, match="data.download must be a bool, got 1"):
        config.load(path)
    path.write_text("[loss]\nkl_multiplier = true\n")
    with pytest.raises(ConfigError, match="loss.kl_multiplier must be a float, got True"):
        config.load(path)


def test_integers_take_whole_numbers_in_any_spelling_and_refuse_fractions_and_words(tmp_path):
    assert config.load("default", ["train.epochs=1e3"]).train.epochs == 1000
    assert config.load("default", ["train.epochs=7.0"]).train.epochs == 7
    rejects(["train.epochs=2.5"], "train.epochs must be a int, got '2.5'")
    rejects(["train.epochs=two"], "train.epochs must be a int, got 'two'")
    path = tmp_path / "run.toml"
    path.write_text("[train]\nepochs = 2.0\n")  # a TOML float is not an int, even a whole one
    with pytest.raises(ConfigError, match="train.epochs must be a int, got 2.0"):
        config.load(path)


def test_a_toml_integer_is_widened_to_a_float_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[loss]\nrecon_multiplier = 500\n")
    value = config.load(path).loss.recon_multiplier
    assert value == 500.0 and isinstance(value, float)


def test_string_keys_keep_text_that_looks_like_a_number():
    assert config.load("default", ["data.dir=123"]).data.dir == "123"
    assert config.coerce("data.dir", "true") == "true"


def test_an_optional_type_converts_to_its_inner_type():
    assert config.convert("some.key", "3", int | None) == 3
    with pytest.raises(ConfigError, match="some.key must be a int"):
        config.convert("some.key", "x", int | None)


def test_unknown_keys_get_the_nearest_key_or_the_list_of_known_keys(tmp_path):
    with pytest.raises(
        ConfigError, match="unknown config key 'model.latnt_dim'; did you mean 'model.latent_dim'"
    ):
        config.coerce("model.latnt_dim", 3)
    with pytest.raises(
        ConfigError, match="unknown config key 'zzz'; known keys: model.arch, model.latent_dim"
    ):
        config.parse_overrides(["zzz=1"])
    path = tmp_path / "run.toml"
    path.write_text("[modle]\nlatent_dim = 3\n")  # a misspelt table in a file
    with pytest.raises(
        ConfigError, match="unknown config key 'modle.latent_dim'; did you mean 'model.latent_dim'"
    ):
        config.load(path)


def test_overrides_must_be_key_equals_value_and_tolerate_dashes_and_spaces():
    for bad in ("train.epochs", "=3", " =3"):
        with pytest.raises(ConfigError, match="must look like key=value"):
            config.parse_overrides([bad])
    assert config.parse_overrides(["--train.epochs=3", " model.arch = seed "]) == {
        "train.epochs": "3",
        "model.arch": "seed",
    }
    assert config.parse_overrides(["data.dir=a=b"]) == {"data.dir": "a=b"}


def test_named_configs_and_a_toml_base_name_the_choices(tmp_path):
    assert config.named("default") == config.Config()
    with pytest.raises(ConfigError, match="unknown named config 'sed'; choose one of default, seed"):
        config.named("sed")
    path = tmp_path / "run.toml"
    path.write_text('base = "sed"\n')
    with pytest.raises(ConfigError, match="unknown named config 'sed'"):
        config.load(path)


def test_read_toml_names_a_missing_file_and_a_broken_one(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        config.read_toml(tmp_path / "nope.toml")
    (tmp_path / "folder.toml").mkdir()  # a folder is not a file
    with pytest.raises(ConfigError, match="config file not found"):
        config.read_toml(tmp_path / "folder.toml")
    (tmp_path / "bad.toml").write_text('a = "unterminated\n')
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML: "):
        config.read_toml(tmp_path / "bad.toml")
    (tmp_path / "ok.toml").write_text("[train]\nepochs = 2\n")
    assert config.read_toml(tmp_path / "ok.toml") == {"train": {"epochs": 2}}
