"""CTranslate2 export (nmt.export) and translate.py --engine ctranslate2: exact against ours."""

from __future__ import annotations

import dataclasses
import json

import ctranslate2
import pytest
import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig, ModelConfig
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.decode.ct2 import decode_corpus_ct2
from nmt.decode.ct2_spec import build_spec, unmappable
from nmt.decode.search import decode_corpus, length_limits
from nmt.model.transformer import Transformer
from nmt.train.checkpoint import load_for_inference
from tests.conftest import MULTI30K

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run_dir(finished_multi30k_run):
    return finished_multi30k_run


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
