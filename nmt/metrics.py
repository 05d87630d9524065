"""sacreBLEU BLEU and chrF on detokenized text, with their signatures."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF


def corpus_scores(
    hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False, tokenize: str | None = None
) -> dict[str, float | str]:
    """Corpus BLEU and chrF of hyps against one reference each, with sacreBLEU signatures.

    The default (cased, 13a-tokenized inside sacreBLEU, on detokenized text) is the number to
    report; lowercase/tokenize are for comparisons with papers and must be labelled as such.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    bleu = BLEU(lowercase=lowercase, tokenize=tokenize)
    chrf = CHRF(lowercase=lowercase)
    bleu_score = bleu.corpus_score(list(hyps), [list(refs)])
    chrf_score = chrf.corpus_score(list(hyps), [list(refs)])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
