"""The inference-time analyses on cases whose answer is known: logits at a known temperature,
a distribution smoothed by a known prior, hand-made alignments, constructed clusters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig
from nmt.data.batching import pad
from nmt.decode.adjust import TINY, Rectify, Temperature, check_temperature, parse_temperature
from nmt.decode.search import beam_search, decode_corpus, greedy_search, rank
from nmt.errors import NMTError
from nmt.objective import smoothing as registry
from nmt.study.analyses.generated import aligned_matches
from nmt.study.analyses.representations import plane, tightness
from nmt.study.analyses.temperature import fit_temperature, nll_at
from tests.test_search import sources, trained, untrained  # noqa: F401 (fixtures)

CPU = torch.device("cpu")


def drawn_at(temperature: float, n: int = 60000, vocab: int = 12, seed: int = 0):
    """Logits z ~ N(0, 2^2) and labels drawn from softmax(z / temperature)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, vocab, generator=g) * 2.0
    labels = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=g).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_the_fitted_temperature_is_the_minimiser_and_near_the_true_one(true_t):
    logits, labels = drawn_at(true_t)
    fitted = fit_temperature(logits, labels)

    # The minimiser on this sample: dNLL/dbeta (beta = 1/T), the model's expected logit minus
    # the label's, changes sign within 0.1% of the fitted T.
    def slope(t: float) -> float:
        z = logits.double()
        p = F.softmax(z / t, -1)
        return float(((p * z).sum(-1) - z.gather(1, labels[:, None]).squeeze(1)).mean())

    assert slope(fitted * 1.001) < 0 < slope(fitted / 1.001)
    grid = torch.linspace(math.log(fitted) - 0.05, math.log(fitted) + 0.05, 101).exp()
    best = min(grid.tolist(), key=lambda t: nll_at(logits, labels, t))
    assert abs(math.log(best) - math.log(fitted)) <= 0.001
    assert fitted == pytest.approx(true_t, rel=0.03)  # 60k draws: a 3% band is many sigmas


def test_nll_at_is_cross_entropy_of_the_scaled_logits():
    logits, labels = drawn_at(1.0, n=5000)
    expected = float(F.cross_entropy(logits.double() / 1.7, labels))
    assert nll_at(logits, labels, 1.7) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "abc", "-inf", ""])
def test_a_bad_temperature_is_refused(text):
    with pytest.raises(NMTError, match="--temperature"):
        parse_temperature(text)


def test_temperature_values_are_read():
    assert parse_temperature("fitted") == "fitted" and parse_temperature("0.5") == 0.5
    assert parse_temperature(None) is None and check_temperature(2.0) == 2.0


@pytest.mark.parametrize("convention, eps", [("uniform", 0.1), ("fairseq", 0.2)])
def test_rectify_undoes_a_smoothed_optimum(convention, eps):
    vocab = 7
    p = torch.tensor([[0.5, 0.3, 0.2, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0.1, 0.9]], dtype=torch.float64)
    gold, prior = registry.get(convention).kernel(eps, vocab)
    q = gold * p + prior  # the smoothed loss's minimum for data distributed as p
    assert torch.allclose(Rectify(gold, prior)(q.float().log()).exp().double(), p, atol=1e-6)
    out = Rectify(gold, prior)(q.log()).exp()  # float64 logits: what is 0 stays near 0
    assert torch.allclose(out, p, atol=1e-12) and float(out[0, 3]) < 1e-12
    assert float(out[0, 3]) >= TINY


def test_rectify_by_hand():
    # q = (0.6, 0.3, 0.1), prior 0.15, gold 0.55: (0.45, 0.15, 0 -> tiny) / 0.55, renormalised.
    out = Rectify(0.55, 0.15)(torch.tensor([[0.6, 0.3, 0.1]]).log()).exp()
    assert torch.allclose(out, torch.tensor([[0.75, 0.25, 0.0]]), atol=1e-6)


def test_greedy_output_is_the_same_at_every_temperature(untrained):  # noqa: F811
    src = sources(30)
    plain = greedy_search(untrained, src, 1.5, 4)
    for t in (0.3, 4.0):
        scaled = greedy_search(untrained, src, 1.5, 4, scorer=Temperature(t))
        assert [h.tokens for h in scaled] == [h.tokens for h in plain]
        assert scaled[0].logprob != pytest.approx(plain[0].logprob)


@pytest.mark.parametrize("scorer", [Temperature(2.5), Rectify(0.9, 0.1 / 24)], ids=repr)
def test_a_scorer_is_what_beam_search_sums(trained, scorer):  # noqa: F811
    src = sources(12)
    for row, hyps in zip(src, beam_search(trained, src, 4, 1.5, 4, nbest=4, scorer=scorer)):
        for h in hyps:
            tgt = torch.tensor([[2] + h.tokens + [3]])
            with torch.no_grad():
                lp = scorer(trained(row[row != 0][None], tgt[:, :-1]).float())
            assert h.logprob == pytest.approx(float(lp[0].gather(1, tgt[0, 1:, None]).sum()),
                                              abs=1e-4)  # fmt: skip


def test_ranking_a_full_beam_gives_every_length_penalty(untrained):  # noqa: F811
    src_ids = [row[row != 0].tolist() for row in sources(25)]
    cfg = DecodeConfig(beam=4, length_penalty=1.0, max_len_a=1.5, max_len_b=4)
    full = decode_corpus(untrained, src_ids, cfg, device=CPU, nbest=4)
    for alpha in (0.0, 0.6, 1.0):
        direct = decode_corpus(untrained, src_ids, DecodeConfig(**{**vars(cfg),
                               "length_penalty": alpha}), device=CPU)  # fmt: skip
        assert [rank(h, alpha)[0].tokens for h in full] == [h[0].tokens for h in direct]


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ("a b c d", "a x c d", [True, False, True, True]),
        ("a b c", "b c", [False, True, True]),
        ("the cat sat", "sat the cat", [True, True, False]),  # no block shifts
        ("a a", "a", [False, True]),  # the backtrace matches the last one
        ("", "a b", []),
        ("x y", "", [False, False]),
    ],
)
def test_alignment_on_hand_made_sentences(hyp, ref, expected):
    assert aligned_matches(hyp.split(), ref.split()) == expected


def test_tightness_of_constructed_clusters():
    # Means at the corners of an equilateral triangle of side 2; each point 0.1 from its mean.
    f64 = torch.float64
    means = torch.tensor([[0, 0, 5.0], [2.0, 0, 5.0], [1.0, math.sqrt(3.0), 5.0]], dtype=f64)
    offsets = torch.tensor([[0.1, 0, 0], [-0.1, 0, 0], [0, 0, 0.1], [0, 0, -0.1]], dtype=f64)
    groups = [m + offsets for m in means]
    assert tightness(groups) == pytest.approx(0.05, abs=1e-12)
    loose = [m + 10 * offsets for m in means]
    assert tightness(loose) == pytest.approx(0.5, abs=1e-12)


def test_the_plane_through_three_templates_keeps_their_distances():
    g = torch.Generator().manual_seed(0)
    templates = torch.randn(3, 16, generator=g)
    basis = plane(templates)
    assert torch.allclose(basis.double() @ basis.double().T, torch.eye(2, dtype=torch.float64))
    flat = templates.double() @ basis.T
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert float((flat[a] - flat[b]).norm()) == pytest.approx(
            float((templates[a] - templates[b]).norm()), rel=1e-6
        )
    with pytest.raises(NMTError, match="one line"):
        plane(torch.stack([templates[0], 2 * templates[0], 3 * templates[0]]))


def test_decode_corpus_passes_the_scorer(untrained):  # noqa: F811
    src_ids = [row[row != 0].tolist() for row in sources(6)]
    cfg = DecodeConfig(beam=3, length_penalty=1.0, max_len_a=1.5, max_len_b=4)
    cold = decode_corpus(untrained, src_ids, cfg, device=CPU, scorer=Temperature(0.2))
    alone = [beam_search(untrained, pad([s]), 3, 1.5, 4, scorer=Temperature(0.2))[0]
             for s in src_ids]  # fmt: skip
    assert [h[0].tokens for h in cold] == [h[0].tokens for h in alone]
