"""embedding and one_hot (torch.nn.functional names)."""
from __future__ import annotations

from ...frontend.indexing import one_hot
from ...tensor import Tensor, where

__all__ = ["embedding", "one_hot"]


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """weight[input]: rows of weight (num_embeddings, embedding_dim) looked up by index,
    one gather. Rows at padding_idx get no gradient."""
    if not isinstance(input, Tensor) or not input.dtype.is_int:
        raise RuntimeError(f"embedding: expected an integer index tensor, got "
                           f"{input.dtype if isinstance(input, Tensor) else type(input).__name__}")
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                           f"{tuple(weight.shape)}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse are not supported")
    # index_select, unlike weight[input], does not wrap negative indices: they are errors, as in torch
    out = weight.index_select(0, input.reshape(-1)).reshape(*input.shape, weight.shape[1])
    if padding_idx is None:
        return out
    n = weight.shape[0]
    if not -n <= padding_idx < n:
        raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings ({n})")
    hit = (input == padding_idx % n).unsqueeze(-1)
    return where(hit, out.detach(), out)
