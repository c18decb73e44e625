"""Online softmax on accumulator tiles (FlashAttention-2's row statistics), in exp2 units.

Scores stay in raw units (``s = q . k``); ``c = scale * log2(e)`` is folded into the exponent, so
``p = exp2(s * c - m * c)`` is one fma and one ``ex2.approx.ftz`` an element (``kaiodsl.fast.exp2``:
a p below 2**-126 is 0, which no row sum >= 1 can tell apart). ``m`` is the running row
max in raw units (from -inf), ``l`` the running row sum *per lane* (each lane sums its own columns;
the quad reduction is done once, by ``finish``). Per-row lists are ``[i][h]`` as
``fragments.row_reduce`` gives them (row 16 i + g + 8 h).

Masked scores are -inf. A row that has seen no visible key keeps m = -inf; its exponent offset
is taken as 0 instead of -inf (exp2(-inf - -inf) would be NaN), so its p and alpha are exactly 0 and
its l stays 0: ``finish`` / ``lse`` then give o = 0 and LSE = -inf, never NaN.
"""

from __future__ import annotations

import kaiodsl
from kaiodsl import Const, f32

from .fragments import row_max

NEG_INF = -float("inf")
LN2 = 0.6931471805599453


@kaiodsl.func
def _exp2_fma(v, mc):
    neg, c = mc
    return kaiodsl.fast.exp2(kaiodsl.fma(v, c, neg))  # one fma (mul.rn + sub.rn would not contract), one MUFU


@kaiodsl.func
def recompute(s, c, lse2):
    """The backward's probability from a raw score and its row's base-2 logsumexp: exp2(s c - lse2), one
    fma and one MUFU; lse2 = +inf (a row that saw no key) gives 0."""
    return kaiodsl.fast.exp2(kaiodsl.fma(s, c, -lse2))


@kaiodsl.func
def offset(m, c):
    """The exponent offset of a row with max ``m`` (raw units): m * c, or 0 for a row with no key."""
    return kaiodsl.where(m == NEG_INF, f32(0.0), m * c)


@kaiodsl.func
def local_sum(T: Const, p, init):
    """Per row, this lane's own columns of ``p`` plus ``init[i][h]`` (no shuffles)."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        pair = []
        for h in kaiodsl.static_range(2):
            v = init[i][h]
            for j in kaiodsl.static_range(T.nj):
                v = v + (p[i][j][2 * h] + p[i][j][2 * h + 1])
            pair = pair + [v]
        out = out + [pair]
    return out


@kaiodsl.func
def _probs(T: Const, s, neg, c):
    """p = exp2(s c + neg[i][h]) for every element: ``neg`` the rows' negated offsets (-offset of the
    reference max)."""
    return [[(_exp2_fma(s[i][j][0], (neg[i][0], c)), _exp2_fma(s[i][j][1], (neg[i][0], c)),
              _exp2_fma(s[i][j][2], (neg[i][1], c)), _exp2_fma(s[i][j][3], (neg[i][1], c)))
             for j in range(T.nj)] for i in range(T.mi)]


@kaiodsl.func
def online_update(T: Const, s, m, l, c):
    """One key block: (p, m_new, l_new, alpha). ``s`` raw masked scores (an AccTile T), ``m``/``l``
    the running max and per-lane sum; the caller rescales its output by ``alpha`` (0 on a row's first
    visible block: exp2(-inf) = 0)."""
    m_new = row_max(T, s, m)
    neg = [[-offset(m_new[i][h], c) for h in range(2)] for i in range(T.mi)]
    alpha = [[_exp2_fma(m[i][h], (neg[i][h], c)) for h in range(2)] for i in range(T.mi)]
    p = _probs(T, s, neg, c)
    l_new = local_sum(T, p, [[l[i][h] * alpha[i][h] for h in range(2)] for i in range(T.mi)])
    return p, m_new, l_new, alpha


RESCALE_LOG2 = 8.0      # lazy_update: the running max moves once a score passes it by more than 2^8


@kaiodsl.func
def lazy_update(T: Const, s, m, l, c):
    """``online_update`` with a conditional rescale (FlashAttention-4's): the running max moves only
    when some row of the warp sees a score more than RESCALE_LOG2 (in exp2 units) above its max; until
    then p = exp2(s c - m c) <= 2^8 (fine for f16, bf16 and e4m3 P, and for f32 sums) and nothing needs
    rescaling. Returns (p, m, l, alpha, moved), ``moved`` warp-uniform (a vote): where it is False,
    alpha is 1 and the caller skips its own rescale of O. The result is the same softmax with another
    (still exact) reference max; LSE uses it consistently. ``c`` must be positive."""
    m_new = row_max(T, s, m)
    grow = False
    for i in kaiodsl.static_range(T.mi):
        for h in kaiodsl.static_range(2):
            grow = grow or (m_new[i][h] - m[i][h]) * c > RESCALE_LOG2      # NaN (-inf twice): no move
    moved = kaiodsl.vote_any(grow)
    mm = m
    alpha = [[f32(1.0), f32(1.0)] for i in range(T.mi)]
    ls = l
    if moved:
        mm = m_new
        alpha = [[_exp2_fma(m[i][h], (-offset(m_new[i][h], c), c)) for h in range(2)] for i in range(T.mi)]
        ls = [[l[i][h] * alpha[i][h] for h in range(2)] for i in range(T.mi)]
    neg = [[-offset(mm[i][h], c) for h in range(2)] for i in range(T.mi)]
    p = _probs(T, s, neg, c)
    return p, mm, local_sum(T, p, ls), alpha, moved


@kaiodsl.func
def finish(T: Const, l):
    """The per-lane sums reduced over the quad (the whole row's sum, in every lane of the quad)."""
    out = []
    for i in kaiodsl.static_range(T.mi):
        pair = []
        for h in kaiodsl.static_range(2):
            v = l[i][h]
            v = v + kaiodsl.shfl_xor(v, 1)
            v = v + kaiodsl.shfl_xor(v, 2)
            pair = pair + [v]
        out = out + [pair]
    return out


@kaiodsl.func
def inverse(T: Const, l):
    """1 / l per row, 0 for a row with no visible key (its output is 0)."""
    return [[kaiodsl.where(l[i][h] > 0.0, 1.0 / l[i][h], f32(0.0)) for h in range(2)] for i in range(T.mi)]


@kaiodsl.func
def lse(T: Const, m, l, c):
    """The natural-log logsumexp of each row's scaled scores: (m c + log2 l) ln 2; -inf with no key."""
    return [[kaiodsl.where(l[i][h] > 0.0, (m[i][h] * c + kaiodsl.log2(l[i][h])) * LN2, f32(NEG_INF))
             for h in range(2)] for i in range(T.mi)]


__all__ = ["online_update", "lazy_update", "RESCALE_LOG2", "recompute", "local_sum", "finish", "inverse", "lse",
           "offset", "NEG_INF", "LN2"]
