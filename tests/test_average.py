"""python -m nmt.average: the mean of checkpoints of one run, and what it never writes over."""

from __future__ import annotations

import pytest
import torch

from nmt.config import ModelConfig
from nmt.model.transformer import Transformer
from nmt.train.checkpoint import load_checkpoint, save_checkpoint


def _checkpoint(path, scale: float, d_model: int = 16, spm=b"tok"):
    cfg = ModelConfig(d_model=d_model, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1)
    model = Transformer(cfg, 20)
    weights = {k: torch.full_like(v, scale) for k, v in model.state_dict().items()}
    from nmt.config import Config

    state = {
        "model": weights,
        "config": Config(model=cfg).to_dict(),
        "vocab_size": 20,
        "spm_model": torch.tensor(list(spm), dtype=torch.uint8),
        "step": int(scale),
    }
    save_checkpoint(state, path)
    return path


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_average_of_two_checkpoints(tmp_path):
    from nmt.decode.average import main

    a, b = _checkpoint(tmp_path / "a.pt", 1.0), _checkpoint(tmp_path / "b.pt", 4.0)
    assert main([str(a), str(b), "--out", str(tmp_path / "avg.pt")]) == 0
    avg = load_checkpoint(tmp_path / "avg.pt")
    assert all(torch.all(v == 2.5) for v in avg["model"].values())
    assert avg["averaged_steps"] == [1, 4] and avg["step"] == 4
    assert load_checkpoint(a)["model"]["src_embed.weight"][0, 0] == 1.0  # inputs untouched


def test_average_last_n_numbered_checkpoints_of_a_run(tmp_path):
    from nmt.decode.average import main

    for step in (5, 10, 15):
        _checkpoint(tmp_path / f"checkpoint_step{step}.pt", float(step))
    assert main(["--last", "2", str(tmp_path), "--out", str(tmp_path / "avg.pt")]) == 0
    avg = load_checkpoint(tmp_path / "avg.pt")
    assert avg["averaged_steps"] == [10, 15]
    assert all(torch.all(v == 12.5) for v in avg["model"].values())


@pytest.mark.parametrize(
    "other, needle",
    [
        (dict(d_model=32), "has another architecture than"),
        (dict(spm=b"other"), "has another vocabulary than"),
    ],
)
def test_average_refuses_checkpoints_that_disagree(tmp_path, capsys, other, needle):
    from nmt.decode.average import main

    a = _checkpoint(tmp_path / "a.pt", 1.0)
    b = _checkpoint(tmp_path / "b.pt", 2.0, **other)
    assert main([str(a), str(b), "--out", str(tmp_path / "avg.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
    assert not (tmp_path / "avg.pt").exists()


def test_average_refuses_to_write_over_an_input_or_with_too_few(tmp_path, capsys):
    from nmt.decode.average import main

    a, b = _checkpoint(tmp_path / "a.pt", 1.0), _checkpoint(tmp_path / "b.pt", 2.0)
    before = a.read_bytes()
    assert main([str(a), str(b), "--out", str(a)]) == 2
    assert a.read_bytes() == before
    assert main([str(a), "--out", str(tmp_path / "x.pt")]) == 2
    assert main(["--last", "3", str(tmp_path), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(";")[0] for line in err] == [
        f"error: --out {a} is one of the checkpoints to average",
        "error: give at least two checkpoints to average",
        f"error: {tmp_path} has 0 numbered checkpoints, 3 asked for",
    ]


def test_average_never_writes_over_a_file_it_was_not_told_to(tmp_path, capsys):
    """An existing --out needs --overwrite; a run's own checkpoints are never an --out."""
    from nmt.decode.average import main

    a, b = _checkpoint(tmp_path / "a.pt", 1.0), _checkpoint(tmp_path / "b.pt", 3.0)
    mine = tmp_path / "avg.pt"
    mine.write_bytes(b"the user's file")
    last = _checkpoint(tmp_path / "checkpoint_last.pt", 9.0)
    kept = {p: _sha(p) for p in (mine, last)}
    assert main([str(a), str(b), "--out", str(mine)]) == 2
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "checkpoint_step40.pt"):
        assert main([str(a), str(b), "--out", str(tmp_path / name), "--overwrite"]) == 2
    link = tmp_path / "innocent.pt"
    link.symlink_to(last)  # a link to a run's checkpoint is that checkpoint
    assert main([str(a), str(b), "--out", str(link), "--overwrite"]) == 2
    err = [line.split(";")[0] for line in capsys.readouterr().err.strip().splitlines()]
    assert err == [f"error: --out {mine} already exists"] + [
        f"error: --out {tmp_path / n} is a name train.py gives a run's own checkpoints "
        "(resume and translate read it)"
        for n in ("checkpoint_last.pt", "checkpoint_best.pt", "checkpoint_step40.pt")
    ] + [f"error: --out {link} is a name train.py gives a run's own checkpoints (resume and "
         "translate read it)"]  # fmt: skip
    assert {p: _sha(p) for p in kept} == kept and not (tmp_path / "checkpoint_best.pt").exists()
    assert main([str(a), str(b), "--out", str(mine), "--overwrite"]) == 0  # the user said so
    assert all(torch.all(v == 2.0) for v in load_checkpoint(mine)["model"].values())


def test_average_counts_one_checkpoint_once(tmp_path, capsys):
    """The same file by another spelling, or checkpoint_last.pt beside the numbered file of the
    same update, is one checkpoint: with nothing else it is refused as fewer than two."""
    from nmt.decode.average import main

    step = _checkpoint(tmp_path / "checkpoint_step4.pt", 4.0)
    last = tmp_path / "checkpoint_last.pt"
    last.write_bytes(step.read_bytes())
    other = _checkpoint(tmp_path / "checkpoint_step2.pt", 2.0)
    out = str(tmp_path / "avg.pt")
    assert main([str(step), str(tmp_path / "." / step.name), "--out", out]) == 2
    assert main([str(step), str(last), "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("fewer than two distinct ones were given" in e for e in err)
    assert main([str(step), str(last), str(other), "--out", out]) == 0
    avg = load_checkpoint(out)
    assert avg["averaged_steps"] == [4, 2] and all(
        torch.all(v == 3.0) for v in avg["model"].values()
    )


def test_average_refuses_checkpoints_of_two_runs_unless_told(tmp_path, capsys):
    from nmt.config import Config, ModelConfig, TrainConfig
    from nmt.decode.average import main

    (tmp_path / "r1").mkdir(), (tmp_path / "r2").mkdir()
    a = _checkpoint(tmp_path / "r1" / "a.pt", 1.0)
    b = _checkpoint(tmp_path / "r2" / "b.pt", 3.0)  # the same config, another folder
    c = _checkpoint(tmp_path / "r1" / "c.pt", 5.0)
    state = load_checkpoint(c)  # the same folder, another seed and eps
    model = ModelConfig(d_model=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1)
    state["config"] = Config(model=model, train=TrainConfig(seed=2, smoothing=0.2)).to_dict()
    save_checkpoint({k: v for k, v in state.items() if k != "format_version"}, c)
    d = _checkpoint(tmp_path / "r1" / "d.pt", 7.0)  # the same run, a longer budget
    state = load_checkpoint(d)
    state["config"]["train"]["max_steps"] = 99
    save_checkpoint({k: v for k, v in state.items() if k != "format_version"}, d)
    out = str(tmp_path / "avg.pt")
    assert main([str(a), str(b), "--out", out]) == 2
    assert main([str(a), str(c), "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {b} and {a} are in different run directories; average checkpoints of one run, "
        "or pass --mixed-runs if you mean it",
        f"error: {c} is from another run than {a} (its config differs in train.seed, "
        "train.smoothing); average checkpoints of one run, or pass --mixed-runs if you mean it",
    ]
    assert not (tmp_path / "avg.pt").exists()
    assert main([str(a), str(d), "--out", out]) == 0  # a budget change is the same run
    assert main([str(a), str(b), str(c), "--out", out, "--overwrite", "--mixed-runs"]) == 0
    assert all(torch.all(v == 3.0) for v in load_checkpoint(out)["model"].values())


def test_run_directories_mean_their_best_checkpoints_and_two_runs_are_refused(tmp_path, capsys):
    from nmt.decode.average import main

    for name, scale in (("r1", 1.0), ("r2", 3.0)):
        (tmp_path / name).mkdir()
        _checkpoint(tmp_path / name / "checkpoint_best.pt", scale)  # the same step, 1 and 3
    assert main([str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(tmp_path / "a.pt")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'r2' / 'checkpoint_best.pt'} and "
        f"{tmp_path / 'r1' / 'checkpoint_best.pt'} are in different run directories; average "
        "checkpoints of one run, or pass --mixed-runs if you mean it"
    )
