"""sacreBLEU BLEU and chrF on detokenized text, with their signatures."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF


def _corpus(hyps: Sequence[str], refs: Sequence[str], lowercase: bool, tokenize: str | None):
    """(metric, score) for BLEU and chrF; lowercase/tokenize change BLEU only, as in the CLI."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    metrics = (BLEU(lowercase=lowercase, tokenize=tokenize), CHRF())
    return [(m, m.corpus_score(list(hyps), [list(refs)])) for m in metrics]


def corpus_scores(
    hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False, tokenize: str | None = None
) -> dict[str, float | str]:
    """Corpus BLEU and chrF of hyps against one reference each, with sacreBLEU signatures.

    The default (cased, 13a-tokenized inside sacreBLEU, on detokenized text) is the number to
    report; lowercase/tokenize are for comparisons with papers and must be labelled as such.
    As in the sacrebleu command line (-lc, -tok), they change BLEU only: chrF stays cased.
    """
    (bleu, bleu_score), (chrf, chrf_score) = _corpus(hyps, refs, lowercase, tokenize)
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def score_lines(
    hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False, tokenize: str | None = None
) -> list[str]:
    """The BLEU and chrF lines `sacrebleu REF -i HYP -m bleu chrf -f text -w 2` prints."""
    return [
        score.format(width=2, signature=str(metric.get_signature()))
        for metric, score in _corpus(hyps, refs, lowercase, tokenize)
    ]
