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
    As in the sacrebleu command line (-lc, -tok), they change BLEU only: chrF stays cased.
    bleu_text/chrf_text are the lines `sacrebleu REF -i HYP -m bleu chrf -f text -w 2` prints.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    bleu, chrf = BLEU(lowercase=lowercase, tokenize=tokenize), CHRF()
    bleu_score = bleu.corpus_score(list(hyps), [list(refs)])
    chrf_score = chrf.corpus_score(list(hyps), [list(refs)])
    bleu_sig, chrf_sig = str(bleu.get_signature()), str(chrf.get_signature())
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": bleu_sig,
        "chrf_signature": chrf_sig,
        "bleu_text": bleu_score.format(width=2, signature=bleu_sig),
        "chrf_text": chrf_score.format(width=2, signature=chrf_sig),
    }
