"""Decode with a CTranslate2 export under translate.py's search (translate.py --engine ctranslate2).

What is the same as nmt.decode.search, by construction:
- per-sentence length limits: sentences are decoded in groups of equal limit
  (a * source length + b, EOS included), each group with its own max_decoding_length, so
  every sentence gets exactly its own limit (not the batch's longest);
- --min-len (CTranslate2's min_decoding_length blocks EOS the same way);
- PAD, BOS and UNK are never output (disable_unk and suppress_sequences);
- beam search collects `beam` finished hypotheses per sentence, as ours (a non-zero
  CTranslate2 length penalty turns off its early exit), and they are ranked here by GNMT's
  ((5 + length) / 6) ** alpha: CTranslate2 divides by length ** alpha, so its scores are
  turned back into log-probabilities (return_end_token: the length includes EOS) and
  re-ranked;
- greedy output is identical token for token.

What differs, for beam search only: a hypothesis that reaches the length limit is scored
without the EOS our search forces at the limit, and when more than `beam` hypotheses finish
at the same step CTranslate2 keeps the best by its own normalised score where ours keeps them
in candidate order. Both are rare with the default limits (1.2 x source + 10). And in the
scores only: CTranslate2 removes PAD/BOS/UNK (and EOS before min_len) before its softmax,
ours after, so its log-probabilities are ours renormalised over the allowed tokens.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from nmt.config import DecodeConfig
from nmt.data.tokenizer import EOS_ID
from nmt.decode.ct2_spec import import_ctranslate2
from nmt.decode.search import Hypothesis, length_limits, length_penalty

# translate.py --precision -> CTranslate2 compute_type ("default": the type stored at export).
COMPUTE_TYPES = {"auto": "default", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def load_translator(folder, device: torch.device, compute_type: str = "default"):
    """A ctranslate2.Translator on device, with as many threads as torch uses."""
    ct2 = import_ctranslate2()
    try:
        return ct2.Translator(
            str(folder),
            device=device.type,
            device_index=device.index or 0,
            compute_type=compute_type,
            intra_threads=torch.get_num_threads() if device.type == "cpu" else 0,
        )
    except (RuntimeError, ValueError) as exc:
        from nmt.errors import NMTError

        reason = " ".join(str(exc).split())  # one line, whatever CTranslate2 wrote
        raise NMTError(f"CTranslate2 cannot load {folder}: {reason}") from None


def _hypotheses(result, beam: int, alpha: float, eos: str, tok) -> list[Hypothesis]:
    """CTranslate2 hypotheses as ours: raw log-probability and GNMT score, best first."""
    hyps = []
    for pieces, score in zip(result.hypotheses, result.scores):
        # Beam scores come divided by len ** 1.0 (EOS counted); greedy's are raw (penalty 0).
        logprob = score * len(pieces) if beam > 1 else score
        if pieces and pieces[-1] == eos:
            pieces = pieces[:-1]
        ids = [tok.sp.piece_to_id(p) for p in pieces]
        hyps.append(Hypothesis(ids, logprob / length_penalty(len(ids) + 1, alpha), logprob))
    return sorted(hyps, key=lambda h: -h.score)


def _chunks(rows: list[int], size: int):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def decode_corpus_ct2(
    translator,
    tok,
    src_ids: list[list[int]],
    cfg: DecodeConfig,
    *,
    max_positions: int,
    nbest: int = 1,
    batch_size: int | None = None,
    min_len: int = 0,
    progress: bool = False,
) -> list[list[Hypothesis]]:
    """nmt.decode.search.decode_corpus with a CTranslate2 translator: src_ids end in EOS (as
    translate.encode_sources makes them); nbest lists in input order."""
    from tqdm import tqdm

    beam = cfg.beam
    lens = torch.tensor([len(s) for s in src_ids], dtype=torch.long)
    limits = length_limits(lens, cfg.max_len_a, cfg.max_len_b, max_positions).tolist()
    groups: dict[int, list[int]] = defaultdict(list)
    for i, limit in enumerate(limits):
        groups[limit].append(i)
    piece = tok.sp.id_to_piece
    eos = piece(EOS_ID)
    suppress = [[piece(tok.sp.pad_id())], [piece(tok.sp.bos_id())]]
    sources = [[piece(t) for t in ids[:-1]] for ids in src_ids]  # CTranslate2 adds the EOS
    out: list[list[Hypothesis]] = [[] for _ in src_ids]
    work = []
    for limit, rows in sorted(groups.items()):
        # As decode_corpus: a batch holds at most max_tokens decoder positions.
        size = max(1, cfg.max_tokens // (beam * limit))
        size = min(size, batch_size) if batch_size else size
        work += [(limit, chunk) for chunk in _chunks(rows, size)]
    for limit, rows in tqdm(work, desc="decode", disable=None if progress else True, leave=False):
        if limit == 1:  # only EOS fits: the empty translation, scored by EOS's log-probability
            scored = translator.score_batch([sources[i] for i in rows], [[] for _ in rows])
            for i, res in zip(rows, scored):
                lp = res.log_probs[-1]
                out[i] = [Hypothesis([], lp / length_penalty(1, cfg.length_penalty), lp)]
            continue
        results = translator.translate_batch(
            [sources[i] for i in rows],
            beam_size=beam,
            num_hypotheses=beam,
            length_penalty=1.0 if beam > 1 else 0.0,
            max_decoding_length=limit - 1,  # ours forces EOS at step `limit`
            min_decoding_length=min(min_len, limit - 1),
            max_input_length=0,
            disable_unk=True,
            suppress_sequences=suppress,
            return_scores=True,
            return_end_token=True,
        )
        for i, res in zip(rows, results):
            out[i] = _hypotheses(res, beam, cfg.length_penalty, eos, tok)[:nbest]
    return out
