"""Config: shipped files load, precedence defaults < YAML < flags, errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nmt.cli import parse_args
from nmt.config import Config
from nmt.errors import NMTError
from nmt.model.transformer import Transformer

from .conftest import ROOT

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_required_configs_are_shipped():
    names = {p.name for p in CONFIGS}
    assert {"toy.yaml", "multi30k_tiny.yaml", "multi30k_base.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_builds(path):
    cfg, _ = parse_args(["--config", str(path)])
    model = Transformer(cfg.model, cfg.data.vocab_size)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_multi30k_tiny_is_the_published_size():
    cfg, _ = parse_args(["--config", "configs/multi30k_tiny.yaml"])
    m = cfg.model
    assert (m.encoder_layers, m.decoder_layers, m.d_model, m.ffn_dim, m.heads) == (
        4,
        4,
        128,
        256,
        4,
    )


def test_precedence_defaults_yaml_flags(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("train:\n  lr: 1.0e-3\n  smoothing: 0.2\nmodel:\n  dropout: 0.2\n")
    cfg, _ = parse_args(
        [
            "--config",
            str(yml),
            "--smoothing",
            "0.05",
            "--train.lr",
            "5e-4",
            "--model.share_embeddings=false",
            "--train.betas",
            "0.9,0.997",
        ]
    )
    assert cfg.train.smoothing == 0.05  # flag beats YAML
    assert cfg.train.lr == 5e-4  # dotted flag beats YAML
    assert cfg.model.dropout == 0.2  # YAML beats default
    assert cfg.model.share_embeddings is False
    assert cfg.train.betas == (0.9, 0.997)
    assert cfg.train.warmup_steps == Config().train.warmup_steps  # default kept


def test_short_flags_reach_their_fields():
    cfg, _ = parse_args(
        [
            "--dataset",
            "wmt14",
            "--dataset-config",
            "de-en",
            "--src",
            "de",
            "--tgt",
            "en",
            "--max-steps",
            "7",
            "--max-epochs",
            "3",
            "--seed",
            "9",
            "--vocab-size",
            "32000",
            "--max-tokens",
            "8000",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--run-dir",
            "x",
            "--update-freq",
            "2",
        ]
    )
    assert (cfg.data.dataset, cfg.data.dataset_config, cfg.data.src, cfg.data.tgt) == (
        "wmt14",
        "de-en",
        "de",
        "en",
    )
    assert (cfg.train.max_steps, cfg.train.max_epochs, cfg.train.seed) == (7, 3, 9)
    assert (cfg.data.vocab_size, cfg.data.max_tokens, cfg.train.update_freq) == (32000, 8000, 2)
    assert (cfg.train.device, cfg.train.precision, cfg.train.run_dir) == ("cpu", "fp32", "x")


def test_confidence_penalty_beta_may_exceed_one():
    cfg, _ = parse_args(["--smoothing-type", "confidence-penalty", "--smoothing", "2.5"])
    assert (cfg.train.smoothing_type, cfg.train.smoothing) == ("confidence-penalty", 2.5)


def test_dict_round_trip():
    cfg, _ = parse_args(["--smoothing", "0.3", "--model.d_model", "64", "--model.heads", "2"])
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--train.lrr", "1"], "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
        (["--nope.x", "1"], "unknown config key 'nope.x'"),
        (["--train.max_steps", "ten"], "'train.max_steps' expects an integer"),
        (["--train.lr", "fast"], "'train.lr' expects a number"),
        (["--model.tie_output", "maybe"], "'model.tie_output' expects true or false"),
        (["--smoothing", "1.0"], "'train.smoothing' must be in [0, 1)"),
        (["--smoothing", "-0.1"], "'train.smoothing' must be in [0, 1)"),
        (["--smoothing", "1.0", "--smoothing-type", "fairseq"], "must be in [0, 1)"),
        (
            ["--smoothing", "-1", "--smoothing-type", "confidence-penalty"],
            "'train.smoothing' must be >= 0 (the confidence penalty's beta)",
        ),
        (["--train.smoothing_type", "gauss"], "'train.smoothing_type' must be one of uniform"),
        (["--model.d_model", "100", "--model.heads", "3"], "'model.d_model' must be divisible"),
        (["--train.lr"], "'--train.lr' needs a value"),
        (["stray"], "unknown argument 'stray'"),
    ],
)
def test_bad_flags_name_the_key(argv, needle):
    with pytest.raises(NMTError) as err:
        parse_args(argv)
    assert needle in str(err.value)


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    yml = tmp_path / "bad.yaml"
    yml.write_text("model:\n  d_modle: 256\n")
    with pytest.raises(
        NMTError,
        match=r"bad.yaml: unknown config key 'model.d_modle' "
        r"\(did you mean 'model.d_model'\?\)",
    ):
        parse_args(["--config", str(yml)])


def test_yaml_type_error_names_key(tmp_path):
    yml = tmp_path / "bad.yaml"
    yml.write_text("train:\n  max_steps: 1.5\n")
    with pytest.raises(NMTError, match="'train.max_steps' expects an integer"):
        parse_args(["--config", str(yml)])


def test_unparsable_yaml_and_missing_file(tmp_path):
    yml = tmp_path / "broken.yaml"
    yml.write_text("train:\n  lr: [1, 2\n")
    with pytest.raises(NMTError, match="is not valid YAML at line"):
        parse_args(["--config", str(yml)])
    with pytest.raises(NMTError, match="does not exist"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])


def test_the_default_recipe_is_configs_multi30k_tiny():
    """One recipe: `python train.py` and `--config configs/multi30k_tiny.yaml` resolve alike."""
    tiny = ROOT / "configs" / "multi30k_tiny.yaml"
    default, _ = parse_args([])
    assert parse_args(["--config", str(tiny)])[0] == default
    # Every value the file names is one the defaults hold (the file is not a no-op).

    for section, values in yaml.safe_load(tiny.read_text()).items():
        for key, value in values.items():
            assert getattr(getattr(default, section), key) == value, f"{section}.{key}"
    assert (default.train.valid_every, default.train.patience) == (1000, 10)
    assert (default.train.schedule, default.train.ema_decay, default.data.vocab_size) == (
        "cosine",
        0.999,
        4000,
    )


def test_the_configuration_reference_names_every_key_with_its_default():
    """docs/configuration.md's table: one row per config key, with the default of today."""
    from nmt.config import Config, flatten

    from .conftest import ROOT

    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and "." in cells[0]:
            rows[cells[0].strip("`")] = cells[2].strip("`")
    defaults = flatten(Config().to_dict(), "defaults")
    assert sorted(rows) == sorted(defaults)
    for key, value in defaults.items():
        shown = "none" if value is None else value
        if isinstance(value, list):
            shown = tuple(value)
        assert rows[key] == str(shown), key


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  max_steps: 100\nmodel:\n  d_model: 64\ntrain:\n  seed: 3\n",
         "'train' is given twice (lines 1 and 5)"),
        ("train:\n  lr: 1.0e-3\n  seed: 2\n  lr: 2.0e-3\n", "'lr' is given twice (lines 2 and 4)"),
    ],
)  # fmt: skip
def test_a_yaml_key_given_twice_is_refused_with_its_lines(tmp_path, text, message):
    """PyYAML keeps the last of two equal keys: the first section's max_steps would be lost."""
    from nmt.config import load_yaml

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(NMTError) as err:
        load_yaml(path)
    assert str(err.value) == f"config file {path}: {message}; keep one of them"


def test_a_binary_config_file_is_one_line(tmp_path):
    from .conftest import run

    path = tmp_path / "model.pt"
    path.write_bytes(bytes(range(256)))
    proc = run("train.py", "--config", str(path), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stderr == (
        f"error: config file {path} is not a text file (not UTF-8); pass a YAML file such as "
        "configs/multi30k_tiny.yaml\n"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--train.smoothing", "0.3", "--smoothing", "0.1"],
        ["--smoothing", "0.1", "--train.smoothing=0.3"],
    ],
)
def test_two_spellings_of_one_key_with_different_values_are_refused(argv):
    from nmt.cli import parse_args

    with pytest.raises(NMTError) as err:
        parse_args(argv)
    assert str(err.value).startswith("train.smoothing is given twice with different values (")
    assert str(err.value).endswith("); give it once")


def test_one_spelling_given_twice_keeps_the_last_and_says_so(caplog):
    from nmt.cli import parse_args

    with caplog.at_level("WARNING"):
        cfg, _ = parse_args(["--max-steps", "5", "--smoothing", "0.2", "--max-steps", "7",
                             "--train.lr", "1e-3", "--train.lr=2e-3"])  # fmt: skip
    assert (cfg.train.max_steps, cfg.train.smoothing, cfg.train.lr) == (7, 0.2, 2e-3)
    assert "--max-steps is given 2 times; the last value, 7, is used" in caplog.text
    assert "--train.lr is given 2 times; the last value, 2e-3, is used" in caplog.text
    agree, _ = parse_args(["--smoothing", "0.1", "--train.smoothing", "0.1"])  # no conflict
    assert agree.train.smoothing == 0.1


def test_kernels_resolve_fast_and_a_config_file_without_them_is_an_older_runs_record(tmp_path):
    """train.kernels: the command line resolves auto to fast (what config.yaml records); a
    config file that names none is a run from before the key, so it reproduces that run's
    arithmetic (reference); a file or a flag may name either; anything else is one line."""
    assert parse_args([])[0].train.kernels == "fast"
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  smoothing: 0.1\n")
    assert parse_args(["--config", str(old)])[0].train.kernels == "reference"
    assert parse_args(["--config", str(old), "--train.kernels", "auto"])[0].train.kernels == "fast"
    new = tmp_path / "new.yaml"
    new.write_text("train:\n  kernels: auto\n")
    assert parse_args(["--config", str(new)])[0].train.kernels == "fast"
    with pytest.raises(NMTError, match="'train.kernels' must be one of auto, fast, reference"):
        parse_args(["--train.kernels", "turbo"])
    from nmt.config_checks import BOOKKEEPING

    assert "train.kernels" in BOOKKEEPING  # how the arithmetic runs, not what is trained
