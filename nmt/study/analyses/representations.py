"""Müller, Kornblith and Hinton's picture ("When does label smoothing help?", NeurIPS 2019):
the decoder's final hidden states (what the output projection sees) at reference positions
whose gold piece is one of three chosen pieces, projected onto the plane through those pieces'
output-embedding rows (their templates), and one number for how tight the clusters are.
"""

from __future__ import annotations

import torch

from nmt.errors import NMTError

# Three frequent target pieces of Multi30k's German side: two persons and an animal (Müller et
# al. also show two similar classes and a third apart). Chosen once, the same for every run.
DEFAULT_PIECES = ("▁Mann", "▁Frau", "▁Hund")
POINTS = 200  # per piece in analysis.json's projection (the tightness uses every position)
TIGHTNESS = (
    "mean Euclidean distance of a hidden state to its piece's mean hidden state, over the "
    "mean distance between the three pieces' means, in the full hidden space (lower: tighter)"
)


def piece_ids(tok, pieces: tuple[str, ...]) -> list[int]:
    """The vocabulary ids of three distinct pieces (a word without SentencePiece's '▁' is looked
    up with it too), or one NMTError naming the one that is missing."""
    if len(pieces) != 3 or len(set(pieces)) != 3:
        raise NMTError(f"--pieces needs three different pieces, got {len(pieces)}: {pieces}")
    ids = []
    for piece in pieces:
        found = [tok.sp.piece_to_id(p) for p in (piece, "▁" + piece)]
        found = [i for i, p in zip(found, (piece, "▁" + piece)) if tok.sp.id_to_piece(i) == p]
        if not found or found[0] < 4:  # 0-3: PAD, UNK, BOS, EOS
            raise NMTError(
                f"--pieces: {piece!r} is not a piece of this model's vocabulary; choose frequent "
                "target words that are one piece each (e.g. ▁Mann,▁Frau,▁Hund)"
            )
        ids.append(found[0])
    return ids


def plane(templates: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (2, D) of the plane through three templates (3, D): Gram-Schmidt on
    (t2 - t1, t3 - t1)."""
    t = templates.double()
    u = t[1] - t[0]
    u = u / u.norm()
    w = t[2] - t[0]
    v = w - (w @ u) * u
    if float(v.norm()) <= 1e-6 * float(w.norm()):  # float32 rows: collinear up to rounding
        raise NMTError("the three pieces' templates lie on one line: choose other pieces")
    return torch.stack([u, v / v.norm()])


def tightness(groups: list[torch.Tensor]) -> float:
    """TIGHTNESS of the groups of points (n_c, D)."""
    means = [g.double().mean(0) for g in groups]
    within = torch.cat([(g.double() - m).norm(dim=1) for g, m in zip(groups, means)]).mean()
    pairs = [(a, b) for a in range(len(means)) for b in range(a + 1, len(means))]
    between = torch.stack([(means[a] - means[b]).norm() for a, b in pairs]).mean()
    return float(within / between)


def representation_section(hidden, labels, weight, ids: list[int], pieces) -> dict:
    """analysis.json's 'representations': per piece its count and first POINTS projections,
    the templates' projections, and the tightness in the full space and in the plane."""
    basis = plane(weight[ids].detach().float().cpu())  # (2, D)
    groups = [hidden[labels == i] for i in ids]
    missing = [p for p, g in zip(pieces, groups) if len(g) < 2]
    if missing:
        raise NMTError(
            f"--pieces: {', '.join(missing)} occur fewer than twice as reference pieces of the "
            "test split; choose more frequent pieces"
        )
    flat = [g.double() @ basis.T for g in groups]  # (n_c, 2)
    templates = weight[ids].detach().double().cpu() @ basis.T  # (3, 2)
    return {
        "pieces": list(pieces),
        "measure": TIGHTNESS,
        "tightness": tightness(groups),
        "tightness_plane": tightness(flat),
        "counts": [len(g) for g in groups],
        "templates": [[round(float(x), 5) for x in row] for row in templates],
        "points": [[[round(float(x), 5) for x in p] for p in f[:POINTS]] for f in flat],
    }
