"""Attention (torch.nn.functional names and semantics), as compositions of Tensor ops."""
from __future__ import annotations

import math

from ... import dtypes
from ...autograd import no_grad
from ...frontend.creation import ones, zeros
from ...frontend.indexing import cat
from ...tensor import Tensor, where
from .dropout import dropout
from .linear import linear

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]


# ---- the attention core ----------------------------------------------------------------------
def _masked_scores(scores: Tensor, mask: Tensor | None) -> Tensor:
    """A float mask is added (bool masks go through _kept_softmax)."""
    return scores if mask is None else scores + mask


def _safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dim whose rows of only -inf give 0 (not nan), like torch's SDPA.
    Such rows are zeroed before the softmax too, so no nan reaches the backward pass."""
    dead = (scores == -math.inf).all(-1, keepdim=True)
    return where(dead, 0.0, where(dead, 0.0, scores).softmax(-1))


def _kept_softmax(scores: Tensor, keep: Tensor, safe: bool) -> Tensor:
    """softmax(where(keep, scores, -inf)) over the last dim, without ever taking exp of
    -inf: dropped positions take exp(0) and are zeroed after (glibc's vector exp runs a
    vector holding such a lane on a slow path: a causal W3 step's softmax sums took 5x
    longer). Equal to the composed form; with `safe`, a row keeping nothing gives 0."""
    with no_grad():
        m = where(keep, scores, -math.inf).amax(-1, keepdim=True)
        e = where(keep, where(keep, scores - m, 0.0).exp(), 0.0)
        total = e.sum(-1, keepdim=True)
        if safe:  # a row that keeps nothing sums to 0: divide it by 1 instead (0, not nan)
            total = where(total == 0, 1.0, total)
        out = e / total
    return scores._softmax_of(out, -1)  # its gradient from out (dropped positions: 0)


def _attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float, dropout_p: float,
               safe: bool) -> tuple:
    """(softmax(q k^T * scale + mask) with dropout) @ v, and the attention weights."""
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None and mask.dtype.is_bool:
        weights = _kept_softmax(scores, mask, safe)
    else:
        scores = _masked_scores(scores, mask)
        weights = _safe_softmax(scores) if safe and mask is not None else scores.softmax(-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return weights @ v, weights


def _check_sdpa_shapes(query: Tensor, key: Tensor, value: Tensor, enable_gqa: bool) -> None:
    shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(f"scaled_dot_product_attention: expected (..., L, E) query and (..., S, E) key and "
                           f"value, got {shapes}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: query and key need the same embedding size E and key "
                           f"and value the same length S; got {shapes}")
    if enable_gqa and (query.ndim < 3 or key.shape[-3] != value.shape[-3] or query.shape[-3] % key.shape[-3]):
        raise RuntimeError(f"scaled_dot_product_attention: with enable_gqa the number of query heads (dim -3) must "
                           f"be a multiple of the key/value heads; got {shapes}")


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(Q K^T * scale + mask) V over (..., L, E) queries and (..., S, E) keys/values.

    A bool attn_mask is True where attention is allowed; a float one is added to the scores.
    is_causal lets query i see keys 0..i (top-left aligned when L != S). Query rows that can
    see no key give 0 and zero gradients, as in torch. Dropout applies whenever dropout_p > 0.
    """
    _check_sdpa_shapes(query, key, value, enable_gqa)
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True")
    if enable_gqa and query.shape[-3] != key.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(groups, -3), value.repeat_interleave(groups, -3)
    if is_causal:
        attn_mask = ones(query.shape[-2], key.shape[-2], dtype=dtypes.bool_, device=query.device).tril()
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    # a causal mask leaves every query row key 0, so no row is all -inf: skip the check
    # (a reduce over every score, forward and backward)
    safe = not (is_causal and key.shape[-2] > 0)
    return _attention(query, key, value, attn_mask, scale, dropout_p, safe=safe)[0]


# ---- multi-head attention (torch.nn.MultiheadAttention's functional form) ---------------------------
def _check_mha_shapes(query: Tensor, key: Tensor, value: Tensor, key_padding_mask, attn_mask,
                      num_heads: int) -> bool:
    """True for batched (L, N, E) inputs, False for unbatched (L, E) ones; raises otherwise."""
    shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise RuntimeError(f"multi_head_attention_forward: expected query, key and value all 3-D (batched) or all "
                           f"2-D (unbatched), got {shapes}")
    batched = query.ndim == 3
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise RuntimeError(f"multi_head_attention_forward: for {'batched' if batched else 'unbatched'} inputs "
                           f"key_padding_mask must be {query.ndim - 1}-D, got shape {tuple(key_padding_mask.shape)}")
    if attn_mask is not None and attn_mask.ndim not in (2, 3):
        raise RuntimeError(f"multi_head_attention_forward: attn_mask must be 2-D or 3-D, got shape "
                           f"{tuple(attn_mask.shape)}")
    if not batched and attn_mask is not None and attn_mask.ndim == 3 and attn_mask.shape[0] != num_heads:
        raise RuntimeError(f"multi_head_attention_forward: for unbatched inputs a 3-D attn_mask must be "
                           f"(num_heads={num_heads}, L, S), got {tuple(attn_mask.shape)}")
    return batched


def _float_mask(mask: Tensor | None, dtype) -> Tensor | None:
    """A bool mask (True = masked out, MHA's convention) as an additive float mask."""
    if mask is None or not mask.dtype.is_bool:
        return mask
    return where(mask, -math.inf, 0.0).cast(dtype)


def _in_projection(query: Tensor, key: Tensor, value: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor,
                   b: Tensor | None) -> tuple:
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)


def _with_extra_key(k: Tensor, v: Tensor, extra_k: Tensor, extra_v: Tensor, dim: int, attn_mask,
                    key_padding_mask) -> tuple:
    """Append one key/value position along `dim`; the masks gain an unmasked last column."""
    k, v = cat([k, extra_k], dim), cat([v, extra_v], dim)
    return k, v, _add_column(attn_mask), _add_column(key_padding_mask)


def _add_column(mask: Tensor | None) -> Tensor | None:
    if mask is None:
        return None
    return cat([mask, zeros(*mask.shape[:-1], 1, dtype=mask.dtype, device=mask.device)], -1)


def _heads(x: Tensor, static: Tensor | None, bsz: int, num_heads: int, head_dim: int, name: str) -> Tensor:
    """(S, N, E) -> (N*H, S, hd), or the given static_k / static_v."""
    if static is None:
        return x.reshape(x.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    if static.ndim != 3 or static.shape[0] != bsz * num_heads or static.shape[2] != head_dim:
        raise RuntimeError(f"multi_head_attention_forward: expected {name} of shape ({bsz * num_heads}, S, "
                           f"{head_dim}), got {tuple(static.shape)}")
    return static


def multi_head_attention_forward(query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int,
                                 num_heads: int, in_proj_weight: Tensor | None, in_proj_bias: Tensor | None,
                                 bias_k: Tensor | None, bias_v: Tensor | None, add_zero_attn: bool,
                                 dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Tensor | None,
                                 training: bool = True, key_padding_mask: Tensor | None = None,
                                 need_weights: bool = True, attn_mask: Tensor | None = None,
                                 use_separate_proj_weight: bool = False, q_proj_weight: Tensor | None = None,
                                 k_proj_weight: Tensor | None = None, v_proj_weight: Tensor | None = None,
                                 static_k: Tensor | None = None, static_v: Tensor | None = None,
                                 average_attn_weights: bool = True, is_causal: bool = False) -> tuple:
    """torch.nn.functional.multi_head_attention_forward on time-first (L, N, E) inputs (or
    unbatched (L, E)). Bool masks are True where attention is NOT allowed. Returns (output,
    weights averaged over heads or per head, or None when not need_weights)."""
    batched = _check_mha_shapes(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    if embed_dim != embed_dim_to_check or embed_dim % num_heads:
        raise RuntimeError(f"multi_head_attention_forward: query's embedding size {embed_dim} must equal "
                           f"embed_dim={embed_dim_to_check} and be divisible by num_heads={num_heads}")
    if is_causal and attn_mask is None:
        raise RuntimeError("multi_head_attention_forward: need attn_mask if specifying the is_causal hint (e.g. "
                           "an (L, L) bool mask that is True above the diagonal)")
    head_dim = embed_dim // num_heads
    key_padding_mask = _float_mask(key_padding_mask, query.dtype)
    attn_mask = _float_mask(attn_mask, query.dtype)
    if attn_mask is not None and attn_mask.ndim == 2:
        attn_mask = attn_mask.unsqueeze(0)  # one (L, S) mask for every batch element and head

    if use_separate_proj_weight:
        q, k, v = _in_projection(query, key, value, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias)
    else:
        q, k, v = _in_projection(query, key, value, *in_proj_weight.chunk(3), in_proj_bias)
    if bias_k is not None and bias_v is not None:  # a learned extra key/value position, per batch element
        k, v, attn_mask, key_padding_mask = _with_extra_key(
            k, v, bias_k.expand(1, bsz, embed_dim), bias_v.expand(1, bsz, embed_dim), 0, attn_mask, key_padding_mask)

    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = _heads(k, static_k, bsz, num_heads, head_dim, "static_k")
    v = _heads(v, static_v, bsz, num_heads, head_dim, "static_v")
    if add_zero_attn:  # an all-zero key/value position every query may attend to
        z = zeros(bsz * num_heads, 1, head_dim, dtype=q.dtype, device=q.device)
        k, v, attn_mask, key_padding_mask = _with_extra_key(k, v, z, z, 1, attn_mask, key_padding_mask)
    src_len = k.shape[1]
    if key_padding_mask is not None:
        kpm = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(bsz, num_heads, 1, src_len)
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        attn_mask = kpm if attn_mask is None else attn_mask + kpm

    # torch returns weights through plain softmax (nan rows when all keys are masked) but
    # computes the weightless path with SDPA, whose fully masked rows give 0
    out, weights = _attention(q, k, v, attn_mask, 1 / math.sqrt(head_dim), dropout_p if training else 0.0,
                              safe=not need_weights)
    out = out.transpose(0, 1).reshape(tgt_len, bsz, embed_dim)
    out = linear(out, out_proj_weight, out_proj_bias)
    if not batched:
        out = out.squeeze(1)
    if not need_weights:
        return out, None
    weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
    if average_attn_weights:
        weights = weights.mean(1)
    return out, weights if batched else weights.squeeze(0)
