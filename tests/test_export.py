"""CTranslate2 export (nmt.export) and translate.py --engine ctranslate2: exact against ours."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

import ctranslate2
import pytest
import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig, ModelConfig
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.decode.ct2 import decode_corpus_ct2, load_translator
from nmt.decode.ct2_spec import build_spec, unmappable
from nmt.decode.export import META, export_ctranslate2, file_sha256
from nmt.decode.search import decode_corpus, length_limits
from nmt.model.transformer import Transformer
from nmt.train.checkpoint import load_for_inference
from tests.conftest import MULTI30K, module, run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run_dir(multi30k_run):
    proc, path = multi30k_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def trained(run_dir):
    return load_for_inference(run_dir / "checkpoint_best.pt")


def pairs(n: int) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (MULTI30K / "test.jsonl").open()][:n]
    return [r["en"] for r in rows], [r["de"] for r in rows]


def save_spec(model, tok, folder):
    spec = build_spec(model, tok)
    spec.validate()
    spec.optimize()
    folder.mkdir()
    spec.save(str(folder))
    return ctranslate2.Translator(str(folder), device="cpu", intra_threads=2)


def randomised(cfg: ModelConfig, vocab: int) -> Transformer:
    """A model whose every parameter (biases and LayerNorms too) is random, so a weight
    mapped to the wrong place or left out changes the scores."""
    torch.manual_seed(0)
    model = Transformer(cfg, vocab).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def teacher_forced(model, src: list[int], tgt: list[int]) -> torch.Tensor:
    """Our log-probability of each target token and of EOS."""
    with torch.no_grad():
        logits = model(torch.tensor([src + [EOS_ID]]), torch.tensor([[BOS_ID] + tgt]))
    lp = F.log_softmax(logits.float(), dim=-1)[0]
    return lp.gather(1, torch.tensor(tgt + [EOS_ID])[:, None])[:, 0]


def renormalised(model, src: list[int], tokens: list[int]) -> float:
    """Log-probability of tokens + EOS with PAD, BOS and UNK removed before the softmax."""
    with torch.no_grad():
        logits = model(torch.tensor([src]), torch.tensor([[BOS_ID] + tokens]))[0].float()
    logits[:, [PAD_ID, BOS_ID, UNK_ID]] = float("-inf")
    lp = F.log_softmax(logits, dim=-1)
    return float(lp.gather(1, torch.tensor(tokens + [EOS_ID])[:, None]).sum())


VARIANTS = {
    "trained toy": None,
    "untied, unshared": dict(share_embeddings=False, tie_output=False),
    "gelu": dict(activation="gelu"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ctranslate2_scores_equal_ours_for_every_token(trained, tmp_path, variant):
    model, tok, cfg, _ = trained
    if VARIANTS[variant] is not None:
        model = randomised(dataclasses.replace(cfg.model, **VARIANTS[variant]), len(tok))
    translator = save_spec(model, tok, tmp_path / "ct2")
    src_text, tgt_text = pairs(40)
    src, tgt = tok.encode(src_text), tok.encode(tgt_text)
    piece = tok.sp.id_to_piece
    scored = translator.score_batch(
        [[piece(i) for i in s] for s in src], [[piece(i) for i in t] for t in tgt]
    )
    worst = 0.0
    for s, t, res in zip(src, tgt, scored):
        assert res.tokens == [piece(i) for i in t] + [piece(EOS_ID)]  # EOS scored too
        ours = teacher_forced(model, s, t)
        worst = max(worst, float((ours - torch.tensor(res.log_probs)).abs().max()))
    assert worst < 1e-4, worst


def test_greedy_is_identical_and_beam_scores_agree(trained, tmp_path):
    model, tok, cfg, _ = trained
    translator = save_spec(model, tok, tmp_path / "ct2")
    src = [ids + [EOS_ID] for ids in tok.encode(pairs(100)[0])]
    limits = length_limits(torch.tensor(list(map(len, src))), 1.0, 5, None).tolist()
    for beam in (1, 4):
        search = DecodeConfig(beam=beam, length_penalty=1.0, max_len_a=1.0, max_len_b=5)
        ours = decode_corpus(model, src, search, device=CPU, nbest=beam)
        theirs = decode_corpus_ct2(
            translator, tok, src, search, max_positions=cfg.model.max_positions, nbest=beam
        )
        if beam == 1:  # identical token for token, limits included
            assert [h[0].tokens for h in theirs] == [h[0].tokens for h in ours]
            continue
        # Beam, wherever no hypothesis reached the length limit (there ours scores the EOS it
        # forces; CTranslate2 stops without it): the same best hypothesis, and every hypothesis
        # both n-best lists hold has the same score to 1e-3. The lists themselves may differ
        # in their last members when more than `beam` hypotheses finish at one step.
        free = [
            i for i, hyps in enumerate(ours) if all(len(h.tokens) + 1 < limits[i] for h in hyps)
        ]
        assert len(free) >= 25, len(free)  # the 30-update toy often runs to its limit
        same_lists = 0
        for i in free:
            assert theirs[i][0].tokens == ours[i][0].tokens, i
            scores = {tuple(h.tokens): h.score for h in ours[i]}
            shared = [h for h in theirs[i] if tuple(h.tokens) in scores]
            assert len(shared) >= beam - 1
            for h in shared:
                # CTranslate2 removes PAD/BOS/UNK before its softmax, ours after: its
                # log-probabilities are ours renormalised over the tokens allowed.
                assert h.logprob == pytest.approx(renormalised(model, src[i], h.tokens), abs=1e-3)
                assert h.score >= scores[tuple(h.tokens)] - 1e-4
            same_lists += [h.tokens for h in theirs[i]] == [h.tokens for h in ours[i]]
        assert same_lists >= 0.7 * len(free), (same_lists, len(free))


def test_a_limit_of_one_step_gives_the_same_empty_output(trained, tmp_path):
    """--max-len-a 0 --max-len-b 1: only EOS fits; both engines score it alike."""
    model, tok, cfg, _ = trained
    translator = save_spec(model, tok, tmp_path / "ct2")
    src = [ids + [EOS_ID] for ids in tok.encode(pairs(5)[0])]
    for beam in (1, 2):
        search = DecodeConfig(beam=beam, max_len_a=0.0, max_len_b=1)
        ours = decode_corpus(model, src, search, device=CPU)
        theirs = decode_corpus_ct2(
            translator, tok, src, search, max_positions=cfg.model.max_positions
        )
        assert [h[0].tokens for h in theirs] == [h[0].tokens for h in ours] == [[]] * 5
        for a, b in zip(ours, theirs):
            assert b[0].score == pytest.approx(a[0].score, abs=1e-4) and a[0].score < 0


def test_ctranslate2_never_outputs_pad_bos_or_unk(trained, tmp_path):
    """A model whose best token is always UNK (then PAD, then BOS): neither engine emits them."""
    _, tok, cfg, _ = trained
    model = randomised(dataclasses.replace(cfg.model, tie_output=False), len(tok))
    d = cfg.model.d_model
    with torch.no_grad():  # logits = W . (gamma * xhat + beta); ones . xhat = 0
        model.decoder_norm.weight.fill_(1.0)
        model.decoder_norm.bias.fill_(1.0)
        for token, logit in ((UNK_ID, 60.0), (PAD_ID, 50.0), (BOS_ID, 40.0)):
            model.output.weight[token] = logit / d
    translator = save_spec(model, tok, tmp_path / "ct2")
    src = [ids + [EOS_ID] for ids in tok.encode(pairs(10)[0])]
    with torch.no_grad():  # guard: unconstrained, UNK is the best first token
        memory, mask = model.encode(torch.tensor([src[0]]))
        first = model.decode(torch.tensor([[BOS_ID]]), memory, mask)[0, -1]
    assert int(first.argmax()) == UNK_ID
    banned = {PAD_ID, BOS_ID, UNK_ID}
    for beam in (1, 3):
        search = DecodeConfig(beam=beam, max_len_a=1.0, max_len_b=5)
        theirs = decode_corpus_ct2(
            translator, tok, src, search, max_positions=cfg.model.max_positions, nbest=beam
        )
        ours = decode_corpus(model, src, search, device=CPU, nbest=beam)
        outputs = [h.tokens for hyps in theirs for h in hyps]
        assert outputs and all(not banned & set(tokens) for tokens in outputs)
        if beam == 1:
            assert outputs == [h[0].tokens for h in ours]


def test_export_cli_folder_alone_translates_like_the_native_engine(run_dir, tmp_path):
    out = tmp_path / "toy-ct2"
    proc = module("nmt.export", str(run_dir), "--format", "ctranslate2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert names >= {"model.bin", "config.json", "sentencepiece.model", META}
    meta = json.loads((out / META).read_text())
    state = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    assert meta["checkpoint_sha256"] == file_sha256(run_dir / "checkpoint_best.pt")
    assert meta["step"] == state["step"] and meta["decode"] == state["config"]["decode"]
    src = "\n".join(pairs(100)[0])
    native = run("translate.py", "--checkpoint", str(run_dir), "--beam", "1", stdin=src)
    ct2 = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2", "--beam", "1",
              stdin=src)  # fmt: skip
    assert native.returncode == ct2.returncode == 0, ct2.stderr
    assert ct2.stdout == native.stdout and len(ct2.stdout.splitlines()) == 100


def test_a_checkpoint_is_exported_once_into_the_cache(run_dir, tmp_path):
    cache = tmp_path / "cache"
    env = {"NMT_CACHE": str(cache)}
    args = ["--checkpoint", str(run_dir), "--engine", "ctranslate2", "--beam", "2"]
    first = run("translate.py", *args, stdin="A dog runs.\n", env=env)
    assert first.returncode == 0, first.stderr
    folders = list((cache / "ctranslate2").iterdir())
    assert [f.name for f in folders] == [file_sha256(run_dir / "checkpoint_best.pt")[:32]]
    stamp = (folders[0] / "model.bin").stat().st_mtime_ns
    again = run("translate.py", *args, stdin="A dog runs.\n", env=env)
    assert again.stdout == first.stdout
    assert (folders[0] / "model.bin").stat().st_mtime_ns == stamp  # reused, not rewritten


def test_export_refuses_to_replace_what_it_did_not_write(run_dir, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine\n")
    (tmp_path / "file").write_text("x\n")
    cases = [
        (mine, [], f"--out {mine} already exists; choose another path or pass --overwrite"),
        (mine, ["--overwrite"], f"--out {mine} is not an export of this project"),
        (tmp_path / "file", [], "exists and is not a folder"),
        (tmp_path / "no" / "dir", [], "does not exist"),
    ]
    for out, extra, needle in cases:
        proc = module("nmt.export", str(run_dir), "--format", "ctranslate2", "--out", str(out),
                      *extra)  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert (mine / "keep.txt").read_text() == "mine\n" and [p.name for p in mine.iterdir()] == [
        "keep.txt"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "notes"]  # no temp folder left
    out = tmp_path / "x-ct2"
    export_ctranslate2(run_dir, out)
    before = (out / "model.bin").read_bytes()
    export_ctranslate2(run_dir, out, quantization="int8", overwrite=True)  # an export: replaced
    assert json.loads((out / META).read_text())["quantization"] == "int8"
    assert (out / "model.bin").read_bytes() != before


def test_an_option_ctranslate2_lacks_is_refused_by_name(trained):
    model, tok, cfg, _ = trained
    odd = dataclasses.replace(cfg.model, activation="swish")
    assert unmappable(odd) == "model.activation 'swish' (CTranslate2 export knows relu, gelu)"
    model.cfg = odd
    try:
        with pytest.raises(ValueError, match="cannot export to CTranslate2: model.activation"):
            build_spec(model, tok)
    finally:
        model.cfg = cfg.model


def test_int8_export_is_smaller_and_translates(run_dir, tmp_path):
    export_ctranslate2(run_dir, tmp_path / "fp32")
    export_ctranslate2(run_dir, tmp_path / "int8", quantization="int8")
    _, tok, cfg, _ = load_for_inference(run_dir / "checkpoint_best.pt")
    fp32 = load_translator(tmp_path / "fp32", CPU)
    int8 = load_translator(tmp_path / "int8", CPU)  # "default": the stored int8
    src = [ids + [EOS_ID] for ids in tok.encode(pairs(30)[0])]
    search = DecodeConfig(beam=1, max_len_a=1.0, max_len_b=5)
    a = decode_corpus_ct2(fp32, tok, src, search, max_positions=cfg.model.max_positions)
    b = decode_corpus_ct2(int8, tok, src, search, max_positions=cfg.model.max_positions)
    assert a and b and len(a) == len(b) == 30
    # Weight matrices are stored as int8 (the position table stays float32): a smaller file.
    fp32_size = (tmp_path / "fp32" / "model.bin").stat().st_size
    assert (tmp_path / "int8" / "model.bin").stat().st_size < 0.75 * fp32_size
    assert all(len(h) == 1 and h[0].logprob < 0 for h in a + b)


def test_without_ctranslate2_one_line_says_how_to_install(run_dir, monkeypatch, capsys, tmp_path):
    import translate
    from nmt.decode import export

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 -> ImportError
    monkeypatch.setattr(sys, "stdin", open(tmp_path / "in.txt", "w+"))
    hint = 'error: CTranslate2 is not installed; install it with pip install -e ".[ct2]"'
    # translate.main names the WARNING level "warning" for its messages: restore it after.
    monkeypatch.setattr(logging, "_levelToName", dict(logging._levelToName))
    monkeypatch.setattr(logging, "_nameToLevel", dict(logging._nameToLevel))
    code = translate.main(["--checkpoint", str(run_dir), "--engine", "ctranslate2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(hint)
    code = export.main([str(run_dir), "--format", "ctranslate2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(hint)
    assert not (tmp_path / "o").exists()


def test_a_damaged_export_is_one_error_line(run_dir, tmp_path):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    data = (out / "model.bin").read_bytes()
    (out / "model.bin").write_bytes(data[: len(data) // 3])
    proc = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2",
               stdin="A dog.\n")  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: CTranslate2 cannot load {out}")
    native = run("translate.py", "--checkpoint", str(out), stdin="A dog.\n")
    assert native.returncode == 2 and native.stderr.strip() == (
        f"error: --checkpoint {out} is a CTranslate2 export; translate with it using "
        "--engine ctranslate2"
    )


def test_output_onto_a_file_of_the_export_is_refused(run_dir, tmp_path):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    for name in ("model.bin", META, "sentencepiece.model"):
        before = (out / name).read_bytes()
        proc = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2",
                   "--output", str(out / name), stdin="A dog.\n")  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.strip() == (
            f"error: --output {out / name} is the --checkpoint file; choose another output path"
        )
        assert (out / name).read_bytes() == before
