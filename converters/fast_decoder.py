"""The split prompt decoder: a per-image prep graph and a per-prompt graph, the same function as
`decode_prompts` without a mask input, reassociated so that no prompt projects the image tokens twice.

Prep (once per image, `DecoderPrep`): image embedding + no-mask dense embedding (`keys`), the dense
positional encoding (`key_pe`), and what the first two-way layer computes from them alone: the
token->image key and value projections (`t2i_k`, `t2i_v`) and the image->token query projection (`i2t_q`).

Per prompt (`FastPromptDecoder`), exact reassociations (same function up to fp32 rounding):
- token->image attention over prompt-dependent image tokens x: the key projection is folded into the
  few query tokens, scores_h = (Q_h W_k,h) x^T (the Q_h b_k,h term is constant along each softmax row and
  cancels), and values are projected after the weighted sum, (A_h x) W_v,h^T + b_v,h (rows of A sum to 1);
- image->token attention over such x: the query projection is folded into the prompt keys,
  scores_h = x (W_q,h^T K_h^T) + b_q,h K_h^T, and out_proj into the per-head values,
  out = sum_h A_h (V_h W_o,h^T) + b_o, one matmul over the concatenated heads;
- in the first layer the image side comes from the prep outputs, and every prompt's tokens are rows (or
  columns) of one matmul per head against them, so no per-prompt copy of the image side is made;
- the image->token softmax runs over the few prompt tokens of each pixel, written out as
  exp(x - max) / sum along that axis of scores laid out [K, heads, tokens, pixels] (a softmax along a
  7-long last axis ran 4x slower in LiteRT);
- the output upscaling works on channels-last pixels: each 2x2 stride-2 transposed convolution is one
  matmul, LayerNorm2d a LayerNorm over the last axis, and only the 4 mask channels are put back in image
  order at the end;
- prompts carry FAST_SLOTS point slots instead of N_SLOTS: trailing empty slots are out of attention and
  change nothing, so they are not computed (the runtime sends other prompts to the full decoder).
Only models with SAM's two-way transformer and a no-mask dense embedding take it (`supports_fast_decoder`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mobile_runtime.package_format import LABEL

EMPTY_SLOT_BIAS = -1.0e4  # as tinysam.modeling.transformer (exp() underflows to exactly 0)


def config_supports_fast_decoder(config) -> bool:  # noqa: ANN001 - tinysam.config.ModelConfig
    """Whether a model of `config` has SAM's decoder with a no-mask dense embedding (SAM, MobileSAM, TinySAM)."""
    return config.family == "sam" and config.supports_mask_input


def supports_fast_decoder(model: nn.Module) -> tuple[bool, str]:
    """(True, "") when `model` has the parts the split decoder reads, else (False, why)."""
    cfg = model.config
    if not config_supports_fast_decoder(cfg):
        return False, f"{cfg.name}: its decoder has no no-mask dense embedding (no mask input)"
    t = getattr(getattr(model, "mask_decoder", None), "transformer", None)
    if t is None or not hasattr(t, "layers") or not hasattr(t, "final_attn_token_to_image"):
        return False, f"{cfg.name}: its mask decoder is not SAM's two-way transformer"
    if len(t.layers) < 1 or not t.layers[0].skip_first_layer_pe:
        return False, f"{cfg.name}: its first two-way layer adds the prompt PE to its queries"
    return True, ""


def _weight_heads(w: Tensor, h: int) -> Tensor:
    """Linear weight [Ci, C] (out, in) -> [h, d, C]."""
    ci, c = w.shape
    return w.reshape(h, ci // h, c)


class DecoderPrep(nn.Module):
    """image_embeddings [1, C, E, E] -> (keys, key_pe [1, HW, C], t2i_k, t2i_v, i2t_q [1, HW, Ci])."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image_embeddings: Tensor) -> tuple[Tensor, ...]:
        """The prompt-independent part of the decoder (no mask input)."""
        pe_enc = self.model.prompt_encoder
        dense = pe_enc.embed_masks(None, None)
        keys = (image_embeddings + dense).flatten(2).permute(0, 2, 1)
        key_pe = pe_enc.get_dense_pe().flatten(2).permute(0, 2, 1)
        layer = self.model.mask_decoder.transformer.layers[0]
        k = keys + key_pe
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        return keys, key_pe, t2i.k_proj(k), t2i.v_proj(keys), i2t.q_proj(k)


def _t2i_prepped(attn: nn.Module, q: Tensor, k_proj: Tensor, v_proj: Tensor) -> Tensor:
    """Token->image attention with the image-side projections given ([1, HW, Ci]): every prompt's query
    tokens are rows of one matmul per head (no per-prompt copy of the image side)."""
    h = attn.num_heads
    b, nq, _ = q.shape
    qh = attn.q_proj(q).reshape(b * nq, h, -1).transpose(0, 1)       # [h, B*Nq, d]
    kh = k_proj[0].reshape(-1, h, qh.shape[-1]).transpose(0, 1)      # [h, HW, d]
    vh = v_proj[0].reshape(-1, h, qh.shape[-1]).transpose(0, 1)
    scores = qh @ kh.transpose(1, 2) / attn.logit_divisor            # [h, B*Nq, HW]
    out = torch.softmax(scores, dim=-1) @ vh                         # [h, B*Nq, d]
    return attn.out_proj(out.transpose(0, 1).reshape(b, nq, -1))


def _per_head(x: Tensor, h: int) -> Tensor:
    """[B, N, h*d] -> [h, B*N, d]: every prompt's tokens as rows of one matrix per head."""
    b, n, c = x.shape
    return x.reshape(b * n, h, c // h).transpose(0, 1)


def _from_heads(y: Tensor, b: int) -> Tensor:
    """[h, B*N, X] -> [B, h*N, X] (head-major rows per prompt)."""
    h, bn, x = y.shape
    return y.reshape(h, b, bn // b, x).transpose(0, 1).reshape(b, -1, x)


def _t2i_folded(attn: nn.Module, q: Tensor, keys_pe: Tensor, keys: Tensor) -> Tensor:
    """Token->image attention with W_k folded into the queries and W_v applied after the weighted sum
    (the weight products are one matmul per head over every prompt's tokens)."""
    h = attn.num_heads
    b, nq, _ = q.shape
    qk = _from_heads(_per_head(attn.q_proj(q), h) @ _weight_heads(attn.k_proj.weight, h), b)  # [B, h*Nq, C]
    scores = qk @ keys_pe.transpose(1, 2) / attn.logit_divisor       # [B, h*Nq, HW]
    mixed = torch.softmax(scores, dim=-1) @ keys                     # [B, h*Nq, C]
    mixed = mixed.reshape(b, h, nq, -1).transpose(0, 1).reshape(h, b * nq, -1)  # [h, B*Nq, C]
    wv = _weight_heads(attn.v_proj.weight, h).transpose(1, 2)        # [h, C, d]
    out = mixed @ wv + attn.v_proj.bias.reshape(h, 1, -1)            # [h, B*Nq, d]
    return attn.out_proj(out.transpose(0, 1).reshape(b, nq, -1))


def _i2t_values(attn: nn.Module, tokens: Tensor) -> Tensor:
    """Per-head values with out_proj folded in: [B, h*Nq, C] (sum over heads = one matmul)."""
    h = attn.num_heads
    wo = _weight_heads(attn.out_proj.weight.t(), h)                  # [h, d, C]
    return _from_heads(_per_head(attn.v_proj(tokens), h) @ wo, tokens.shape[0])


def _i2t_finish(attn: nn.Module, scores_t: Tensor, key_bias: Tensor, values: Tensor) -> Tensor:
    """Transposed scores [B, h, Nq, HW] -> softmax over the prompt tokens (axis 2, written out so that it
    runs along the long pixel axis) -> sum_h A_h (V_h W_o,h^T) + b_o as one matmul -> [B, HW, C]."""
    b, h, nq, hw = scores_t.shape
    x = scores_t + key_bias[:, None, :, None]
    e = torch.exp(x - x.amax(dim=2, keepdim=True))
    attn_t = (e / e.sum(dim=2, keepdim=True)).reshape(b, h * nq, hw)
    return attn_t.transpose(1, 2) @ values + attn.out_proj.bias


def _i2t_prepped(attn: nn.Module, q_proj: Tensor, tokens_pe: Tensor, tokens: Tensor, key_bias: Tensor) -> Tensor:
    """Image->token attention with the image queries given ([1, HW, Ci]), every prompt's keys as rows of
    one matmul per head, and out_proj folded."""
    h = attn.num_heads
    b, nq, _ = tokens_pe.shape
    kh = attn.k_proj(tokens_pe).reshape(b * nq, h, -1).transpose(0, 1)  # [h, B*Nq, d]
    qh = q_proj[0].reshape(-1, h, kh.shape[-1]).permute(1, 2, 0)     # [h, d, HW]
    scores_t = (kh @ qh / attn.logit_divisor).reshape(h, b, nq, -1)  # [h, B, Nq, HW]
    return _i2t_finish(attn, scores_t.transpose(0, 1), key_bias, _i2t_values(attn, tokens))


def _i2t_folded(attn: nn.Module, keys_pe: Tensor, tokens_pe: Tensor, tokens: Tensor, key_bias: Tensor) -> Tensor:
    """Image->token attention with W_q folded into the prompt keys and out_proj into the values."""
    h = attn.num_heads
    b, nq, _ = tokens_pe.shape
    kh = _per_head(attn.k_proj(tokens_pe), h)                        # [h, B*Nq, d]
    m_t = _from_heads(kh @ _weight_heads(attn.q_proj.weight, h), b) / attn.logit_divisor  # [B, h*Nq, C]
    const = _from_heads(kh @ attn.q_proj.bias.reshape(h, -1, 1), b) / attn.logit_divisor  # [B, h*Nq, 1]
    scores_t = (m_t @ keys_pe.transpose(1, 2) + const).reshape(b, h, nq, -1)
    return _i2t_finish(attn, scores_t, key_bias, _i2t_values(attn, tokens))


class FastPromptDecoder(nn.Module):
    """(keys, key_pe, t2i_k, t2i_v, i2t_q, point_coords [K, N, 2], point_labels [K, N]) ->
    (low_res_masks [K, 4, 4E, 4E], iou_predictions [K, 4]), equal to `decode_prompts` without mask input."""

    def __init__(self, model: nn.Module):
        super().__init__()
        ok, why = supports_fast_decoder(model)
        if not ok:
            raise ValueError(why)
        self.model = model

    def forward(self, keys: Tensor, key_pe: Tensor, t2i_k: Tensor, t2i_v: Tensor, i2t_q: Tensor,
                point_coords: Tensor, point_labels: Tensor) -> tuple[Tensor, Tensor]:
        """All four mask tokens, before selection."""
        dec = self.model.mask_decoder
        tr = dec.transformer
        sparse = self.model.prompt_encoder.embed_points(point_coords, point_labels)
        k = sparse.shape[0]
        prompt_bias = (point_labels == float(LABEL.EMPTY_SLOT)).to(torch.float32) * EMPTY_SLOT_BIAS
        key_bias = torch.cat([torch.zeros_like(prompt_bias[:, :1]).expand(-1, dec.num_output_tokens), prompt_bias],
                             dim=1)
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).unsqueeze(0).expand(k, -1, -1)
        tokens = torch.cat((out_tokens, sparse), dim=1)
        pe_tok = tokens

        first = tr.layers[0]
        queries = first.norm1(first.self_attn(tokens, tokens, tokens, key_bias))
        queries = first.norm2(queries + _t2i_prepped(first.cross_attn_token_to_image, queries + pe_tok, t2i_k, t2i_v))
        queries = first.norm3(queries + first.mlp(queries))
        x = keys + _i2t_prepped(first.cross_attn_image_to_token, i2t_q, queries + pe_tok, queries, key_bias)
        keys = first.norm4(x)
        for layer in tr.layers[1:]:
            q = queries + pe_tok
            queries = layer.norm1(queries + layer.self_attn(q, q, queries, key_bias))
            keys_pe = keys + key_pe
            t2i = _t2i_folded(layer.cross_attn_token_to_image, queries + pe_tok, keys_pe, keys)
            queries = layer.norm2(queries + t2i)
            queries = layer.norm3(queries + layer.mlp(queries))
            i2t = _i2t_folded(layer.cross_attn_image_to_token, keys_pe, queries + pe_tok, queries, key_bias)
            keys = layer.norm4(keys + i2t)
        final = _t2i_folded(tr.final_attn_token_to_image, queries + pe_tok, keys + key_pe, keys)
        queries = tr.norm_final_attn(queries + final)

        masks = _upscale_masks(dec, keys, queries[:, 1 : 1 + dec.num_mask_tokens, :], self.model.embedding_size)
        return masks, dec.iou_prediction_head(queries[:, 0, :])


def _conv_transpose_matmul(x: Tensor, conv: nn.ConvTranspose2d) -> Tensor:
    """A 2x2 stride-2 transposed convolution on channels-last pixels [B, P, Cin] as one matmul ->
    [B, 4P, Cout], pixel order (p, a, b) for output pixel (2i + a, 2j + b) of input pixel p = (i, j)."""
    w = conv.weight  # [Cin, Cout, 2, 2]
    cin, cout = w.shape[0], w.shape[1]
    y = x @ w.permute(0, 2, 3, 1).reshape(cin, 4 * cout)
    return y.reshape(x.shape[0], -1, cout) + conv.bias


def _upscale_masks(dec: nn.Module, keys: Tensor, mask_tokens: Tensor, e: int) -> Tensor:
    """SAM's output upscaling (ConvT, LayerNorm2d, GELU, ConvT, GELU) and hypernetwork product, in
    channels-last pixels: the transposed convolutions are matmuls, and only the 4 mask channels are put
    back into image order at the end (the same sums as the NCHW form)."""
    up = dec.output_upscaling
    conv1, norm, act1, conv2, act2 = up[0], up[1], up[2], up[3], up[4]
    b = keys.shape[0]
    x = _conv_transpose_matmul(keys, conv1)                          # [B, 4HW, C/4], order (i, j, a, b)
    x = act1(torch.nn.functional.layer_norm(x, (norm.num_channels,), norm.weight, norm.bias, norm.eps))
    x = act2(_conv_transpose_matmul(x, conv2))                       # [B, 16HW, C/8], (i, j, a, b, a2, b2)
    hyper = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
    m = hyper.shape[1]
    masks = x @ hyper.transpose(1, 2)                                # [B, 16HW, M]
    masks = masks.reshape(b, e, e, 2, 2, 4 * m).permute(0, 1, 3, 2, 4, 5)  # [B, i, a, j, b, (a2, b2, M)]
    masks = masks.reshape(b, 2 * e, 2 * e, 2, 2, m).permute(0, 5, 1, 3, 2, 4)  # [B, M, Y, a2, X, b2]
    return masks.reshape(b, m, 4 * e, 4 * e)
