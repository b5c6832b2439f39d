"""matmul and einsum as broadcast multiply + sum (a device may claim the pattern)."""
from __future__ import annotations

from ..tensor import Tensor


def matmul(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.unsqueeze(0) if a.ndim == 1 else a
    y = b.unsqueeze(-1) if b.ndim == 1 else b
    if x.shape[-1] != y.shape[-2]:
        raise RuntimeError(f"matmul: mat1 and mat2 shapes cannot be multiplied ({x.shape[-2]}x{x.shape[-1]} and "
                           f"{y.shape[-2]}x{y.shape[-1]}); shapes {tuple(a.shape)} @ {tuple(b.shape)}")
    # (..., n, 1, k) * (..., 1, m, k) summed over k: the reduce runs along contiguous memory
    out = (x.unsqueeze(-2) * y.transpose(-1, -2).unsqueeze(-3)).sum(-1)
    if a.ndim == 1:
        out = out.squeeze(-2)
    if b.ndim == 1:
        out = out.squeeze(-1)
    return out


def mm(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 3 or b.ndim != 3:
        raise RuntimeError(f"bmm: expected 3-D tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def dot(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"dot: expected 1-D tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a * b).sum()


def outer(a: Tensor, b: Tensor) -> Tensor:
    return a.reshape(-1, 1) * b.reshape(1, -1)


def einsum(equation: str, *operands) -> Tensor:
    """torch.einsum. Each operand's repeated labels become diagonals and its private
    labels are summed at once; then operands are aligned on a shared label order and
    multiplied left to right, each product summing the labels nothing later needs."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise RuntimeError("einsum(): must provide at least one operand")
    inputs, output = _parse_einsum(equation, operands)
    terms = [_diagonals(t, labels, i) for i, (t, labels) in enumerate(zip(operands, inputs))]
    _check_label_sizes(terms)
    for i, (t, labels) in enumerate(terms):
        others = set(output).union(*(set(ls) for j, ls in enumerate(inputs) if j != i))
        terms[i] = _sum_labels(t, labels, [lb for lb in labels if lb not in others])
    acc, acc_labels = terms[0]
    for k in range(1, len(terms)):
        t, labels = terms[k]
        needed = set(output).union(*(set(ls) for _, ls in terms[k + 1:]))
        union = acc_labels + [lb for lb in labels if lb not in acc_labels]
        kept = [lb for lb in union if lb in needed]
        order = kept + [lb for lb in union if lb not in needed]  # summed labels last: the reduce runs innermost
        acc = _align(acc, acc_labels, order) * _align(t, labels, order)
        if len(order) > len(kept):
            acc = acc.sum(tuple(range(len(kept), len(order))))
        acc_labels = kept
    return acc.permute([acc_labels.index(lb) for lb in output])


def _parse_einsum(equation: str, operands) -> tuple[list, list]:
    """Label lists per operand and for the output. Ellipsis dims get labels ".1", ".2", ...
    counted from the right, so they line up (and broadcast) across operands."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): the equation {equation!r} has {len(terms)} operand terms but "
                           f"{len(operands)} operands were given")
    inputs = [_term_labels(term, t.ndim, equation, i) for i, (term, t) in enumerate(zip(terms, operands))]
    ellipsis = max((int(lb[1:]) for ls in inputs for lb in ls if lb[0] == "."), default=0)
    ell_labels = [f".{n}" for n in range(ellipsis, 0, -1)]
    if not arrow:  # implicit output: the ellipsis, then the labels seen once, sorted
        letters = [lb for ls in inputs for lb in ls if lb[0] != "."]
        return inputs, ell_labels + sorted(lb for lb in set(letters) if letters.count(lb) == 1)
    output = []
    for part in _split_ellipsis(rhs, equation):
        output += ell_labels if part == "..." else [part]
    seen = {lb for ls in inputs for lb in ls}
    for lb in output:
        if output.count(lb) > 1:
            raise RuntimeError(f"einsum(): output subscript {lb} appears more than once in the output of {equation!r}")
        if lb not in seen:
            raise RuntimeError(f"einsum(): output subscript {lb} does not appear in the equation for any input "
                               f"operand: {equation!r}")
    return inputs, output


def _split_ellipsis(term: str, equation: str) -> list:
    """'a...b' -> ['a', '...', 'b'], checking the characters."""
    parts = []
    pieces = term.split("...")
    if len(pieces) > 2:
        raise RuntimeError(f"einsum(): found more than one ellipsis in term {term!r} of {equation!r}")
    for n, piece in enumerate(pieces):
        for c in piece:
            if not (c.isascii() and c.isalpha()):
                raise RuntimeError(f"einsum(): invalid subscript {c!r} in {equation!r}; subscripts are letters "
                                   f"a-z, A-Z and '...'")
        parts += list(piece) + (["..."] if n < len(pieces) - 1 else [])
    return parts


def _term_labels(term: str, ndim: int, equation: str, i: int) -> list:
    parts = _split_ellipsis(term, equation)
    letters = len(parts) - ("..." in parts)
    n_ell = ndim - letters
    if n_ell < 0 or (n_ell and "..." not in parts):
        raise RuntimeError(f"einsum(): the number of subscripts in the equation ({letters}) does not match the "
                           f"number of dimensions ({ndim}) for operand {i}"
                           f"{'' if '...' in parts else ' and no ellipsis was given'}")
    labels = []
    for p in parts:
        labels += [f".{n}" for n in range(n_ell, 0, -1)] if p == "..." else [p]
    return labels


def _check_label_sizes(terms: list) -> None:
    sizes: dict = {}  # label -> its size other than 1 (size 1 broadcasts)
    for i, (t, labels) in enumerate(terms):
        for lb, n in zip(labels, t.shape):
            prev = sizes.get(lb, 1)
            if 1 not in (n, prev) and n != prev:
                what = "an ellipsis dimension" if lb[0] == "." else f"subscript {lb}"
                raise RuntimeError(f"einsum(): {what} has size {n} for operand {i} which does not broadcast with "
                                   f"previously seen size {prev}")
            if n != 1:
                sizes[lb] = n


def _diagonals(t: Tensor, labels: list, operand: int) -> tuple[Tensor, list]:
    """Merge repeated labels ('ii') by taking diagonals: the diagonal of an (n, n) block
    is every (n+1)-th element of its flattening, a reshape of the flattening padded to
    n*(n+1), keeping column 0."""
    labels = list(labels)
    while len(set(labels)) < len(labels):
        lb = next(x for x in labels if labels.count(x) > 1)
        a = labels.index(lb)
        b = labels.index(lb, a + 1)
        if t.shape[a] != t.shape[b]:
            raise RuntimeError(f"einsum(): subscript {lb} is repeated for operand {operand} but the sizes don't "
                               f"match, {t.shape[a]} != {t.shape[b]}")
        rest = [k for k in range(t.ndim) if k not in (a, b)]
        x = t.permute(*rest, a, b)
        pre, n = tuple(x.shape[:-2]), t.shape[a]
        x = x.reshape(*pre, n * n)._pad_raw(((0, 0),) * len(pre) + ((0, n),)).reshape(*pre, n, n + 1)
        t = x._shrink(tuple((0, s) for s in pre) + ((0, n), (0, 1))).reshape(*pre, n)
        labels = [labels[k] for k in rest] + [lb]
    return t, labels


def _sum_labels(t: Tensor, labels: list, drop: list) -> tuple[Tensor, list]:
    if not drop:
        return t, labels
    return t.sum(tuple(labels.index(lb) for lb in drop)), [lb for lb in labels if lb not in drop]


def _align(t: Tensor, labels: list, order: list) -> Tensor:
    """Permute t into `order` (a superset of its labels), with size-1 dims for the rest."""
    t = t.permute([labels.index(lb) for lb in order if lb in labels])
    sizes = dict(zip([lb for lb in order if lb in labels], t.shape))
    return t.reshape([sizes.get(lb, 1) for lb in order])
