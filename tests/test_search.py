"""Search: the KV cache equals recomputation, beam 1 equals greedy, beam beats greedy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig, ModelConfig
from nmt.data.batching import pad
from nmt.data.tokenizer import BOS_ID, EOS_ID
from nmt.decode.search import Hypothesis, beam_search, decode_corpus, greedy_search, length_penalty
from nmt.model.transformer import Transformer

V = 24
CFG = ModelConfig(encoder_layers=2, decoder_layers=2, d_model=32, heads=4, ffn_dim=64, dropout=0.0)


def task(n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Sources of 2-9 ids in [4, 14); the target maps each id x to x + 10 in reverse order."""
    g = torch.Generator().manual_seed(seed)
    srcs = [
        torch.randint(4, 14, (int(torch.randint(2, 10, (1,), generator=g)),), generator=g)
        for _ in range(n)
    ]
    return [s.tolist() + [EOS_ID] for s in srcs], [(s.flip(0) + 10).tolist() for s in srcs]


@pytest.fixture(scope="module")
def trained() -> Transformer:
    """A small model trained for a few hundred steps: confident but not perfect."""
    torch.manual_seed(0)
    model = Transformer(CFG, V)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(250):
        src, tgt = task(32, step)
        tgt_ids = pad([[BOS_ID] + t + [EOS_ID] for t in tgt])
        logits = model(pad(src), tgt_ids[:, :-1])
        loss = F.cross_entropy(logits.transpose(1, 2), tgt_ids[:, 1:], ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def untrained() -> Transformer:
    """Random weights: flat distributions, long outputs, many near-ties for the beams."""
    torch.manual_seed(1)
    return Transformer(CFG, V).eval()


def sources(n: int = 40, seed: int = 1000) -> torch.Tensor:
    return pad(task(n, seed)[0])


def teacher_forced_logprob(model, src_row: torch.Tensor, tokens: list[int]) -> float:
    """Sum of log p(y_t | y_<t, x) for tokens + EOS, from one full forward pass."""
    tgt = torch.tensor([[BOS_ID] + tokens + [EOS_ID]])
    src = src_row[src_row != 0][None]
    with torch.no_grad():
        lp = F.log_softmax(model(src, tgt[:, :-1]).float(), -1)
    return float(lp[0].gather(1, tgt[0, 1:, None]).sum())


def test_the_trained_model_has_learned_the_task(trained):
    src, tgt = task(40, 1000)
    hyps = greedy_search(trained, pad(src), 1.0, 3)
    exact = sum(h.tokens == t for h, t in zip(hyps, tgt))
    assert exact >= 10  # learned enough to be peaked, so searches disagree only sometimes


@pytest.mark.parametrize("name", ["trained", "untrained"])
def test_cached_decoding_equals_recomputation(name, request):
    model = request.getfixturevalue(name)
    src = sources()
    for fast, slow in [
        (greedy_search(model, src, 1.5, 4), greedy_search(model, src, 1.5, 4, use_cache=False)),
        *zip(
            beam_search(model, src, 4, 1.5, 4, nbest=4),
            beam_search(model, src, 4, 1.5, 4, nbest=4, use_cache=False),
        ),
    ]:
        assert [h.tokens for h in fast] == [h.tokens for h in slow]
        for a, b in zip(fast, slow):
            assert a.score == pytest.approx(b.score, abs=1e-5)
            assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


@pytest.mark.parametrize("name", ["trained", "untrained"])
def test_beam_1_equals_greedy(name, request):
    model = request.getfixturevalue(name)
    src = sources()
    greedy = greedy_search(model, src, 1.5, 4, alpha=0.6)
    beam1 = beam_search(model, src, 1, 1.5, 4, alpha=0.6)
    assert [[h] for h in greedy] == [[Hypothesis(*b[0])] for b in beam1]
    assert sum(len(h.tokens) for h in greedy) > 2 * len(greedy)


@pytest.mark.parametrize("name", ["trained", "untrained"])
def test_scores_are_the_model_logprobs(name, request):
    model = request.getfixturevalue(name)
    src = sources(12)
    for row, hyps in zip(src, beam_search(model, src, 3, 1.5, 4, alpha=0.6, nbest=3)):
        assert len(hyps) == 3 and len({tuple(h.tokens) for h in hyps}) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.logprob == pytest.approx(
                teacher_forced_logprob(model, row, h.tokens), abs=1e-4
            )
            assert h.score == pytest.approx(h.logprob / ((5 + len(h.tokens) + 1) / 6) ** 0.6)


@pytest.mark.parametrize("name", ["trained", "untrained"])
def test_beam_finds_a_score_at_least_greedys_on_every_sentence(name, request):
    model = request.getfixturevalue(name)
    src = sources(60, 2000)
    greedy = greedy_search(model, src, 1.5, 4)
    beam = beam_search(model, src, 5, 1.5, 4, alpha=0.0)
    better = 0
    for g, b in zip(greedy, beam):
        assert b[0].logprob >= g.logprob - 1e-5
        better += b[0].logprob > g.logprob + 1e-4
    assert better >= 1  # the searches differ somewhere, so the comparison has teeth


def test_length_limit_and_batch_composition(untrained):
    src = sources(30)
    limits = ((src != 0).sum(1) * 0.5 + 2).long()
    alone = [beam_search(untrained, row[row != 0][None], 3, 0.5, 2)[0] for row in src]
    together = beam_search(untrained, src, 3, 0.5, 2)
    assert [h[0].tokens for h in alone] == [h[0].tokens for h in together]
    for h, limit in zip(together, limits.tolist()):
        assert len(h[0].tokens) + 1 <= limit  # EOS counted
    greedy_alone = [greedy_search(untrained, row[row != 0][None], 0.5, 2)[0] for row in src]
    greedy_together = greedy_search(untrained, src, 0.5, 2)
    assert [h.tokens for h in greedy_alone] == [h.tokens for h in greedy_together]
    for a, b in zip(greedy_alone, greedy_together):  # padding changes float rounding only
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    # Random weights rarely pick EOS, so most outputs run into the limit and are cut there.
    assert sum(len(h[0].tokens) + 1 == lim for h, lim in zip(together, limits.tolist())) > 10


def test_max_positions_caps_the_output(untrained):
    src = sources(4)
    for hyp in greedy_search(untrained, src, 3.0, 50, max_positions=7):
        assert len(hyp.tokens) + 1 <= 7


def test_length_penalty_is_gnmt():
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(1, 0.6) == pytest.approx(1.0)


@pytest.mark.parametrize("beam", [1, 4])
def test_decode_corpus_keeps_input_order_across_batches(trained, beam):
    src_ids = task(50, 3000)[0]
    search, cpu = DecodeConfig(beam=beam, max_len_a=1.5, max_len_b=4), torch.device("cpu")
    whole = decode_corpus(trained, src_ids, search, device=cpu, nbest=2)
    small = decode_corpus(trained, src_ids, search, device=cpu, nbest=2, batch_size=3)
    assert [[h.tokens for h in n] for n in whole] == [[h.tokens for h in n] for n in small]
    one_by_one = [
        beam_search(trained, pad([s]), max(beam, 1), 1.5, 4, nbest=2)[0]
        if beam > 1
        else [greedy_search(trained, pad([s]), 1.5, 4)[0]]
        for s in src_ids[:10]
    ]
    assert [[h.tokens for h in n] for n in one_by_one] == [
        [h.tokens for h in n] for n in whole[:10]
    ]


@pytest.mark.parametrize("beam", [1, 3])
def test_min_len_with_equal_max_fixes_every_length(trained, beam):
    src = sources(20)
    src_ids, cpu = [row[row != 0].tolist() for row in src], torch.device("cpu")
    search = DecodeConfig(beam=beam, max_len_a=0, max_len_b=12)
    found = decode_corpus(trained, src_ids, search, device=cpu, min_len=11)
    assert [len(n[0].tokens) for n in found] == [11] * 20
    free = decode_corpus(trained, src_ids, search, device=cpu)
    assert max(len(n[0].tokens) for n in free) < 11  # the trained model stops early by itself
    for row, n in list(zip(src, found))[:5]:  # the forced EOS is scored at its model logprob
        tf = teacher_forced_logprob(trained, row, n[0].tokens)
        assert n[0].logprob == pytest.approx(tf, abs=1e-4)
