"""This project's Transformer as a CTranslate2 TransformerSpec (what nmt.export writes).

The model maps onto CTranslate2's TransformerSpec as it is: pre-norm layers, fused QKV
self-attention, a query and a fused key/value projection in cross-attention, the sinusoidal
table this model adds (interleaved sin/cos) given as position encodings, embeddings scaled by
sqrt(d_model), shared or separate embeddings, a tied or separate output projection without
bias, ReLU or exact (erf) GELU, LayerNorm epsilon 1e-5. The encoder's EOS is added by
CTranslate2 (add_source_eos), the decoder starts from BOS.
"""

from __future__ import annotations

import torch

from nmt.errors import NMTError

INSTALL = 'pip install -e ".[ct2]" (or pip install "ctranslate2>=4.5,<5")'


def import_ctranslate2():
    """The ctranslate2 module, or one NMTError saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise NMTError(f"CTranslate2 is not installed; install it with {INSTALL}") from None
    return ctranslate2


def unmappable(model_cfg) -> str | None:
    """The first model option CTranslate2's TransformerSpec cannot express, or None."""
    if model_cfg.activation not in ("relu", "gelu"):
        return f"model.activation {model_cfg.activation!r} (CTranslate2 export knows relu, gelu)"
    if model_cfg.d_model % model_cfg.heads:
        return f"model.d_model {model_cfg.d_model} not divisible by model.heads {model_cfg.heads}"
    return None


def _np(t: torch.Tensor):
    return t.detach().to(torch.float32).cpu().contiguous().numpy()


def _linear(spec, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    spec.weight = _np(weight)
    if bias is not None:
        spec.bias = _np(bias)


def _norm(spec, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _np(norm.weight), _np(norm.bias)


def _ffn(spec, ffn, norm) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear_0, ffn.fc1.weight, ffn.fc1.bias)
    _linear(spec.linear_1, ffn.fc2.weight, ffn.fc2.bias)


def _self_attention(spec, attn, norm) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear[0], attn.in_proj.weight, attn.in_proj.bias)  # q, k, v stacked
    _linear(spec.linear[1], attn.out_proj.weight, attn.out_proj.bias)


def _cross_attention(spec, attn, norm) -> None:
    d = attn.out_proj.weight.size(0)
    _norm(spec.layer_norm, norm)
    _linear(spec.linear[0], attn.in_proj.weight[:d], attn.in_proj.bias[:d])  # queries
    _linear(spec.linear[1], attn.in_proj.weight[d:], attn.in_proj.bias[d:])  # keys, values
    _linear(spec.linear[2], attn.out_proj.weight, attn.out_proj.bias)


def build_spec(model, tok):
    """A CTranslate2 TransformerSpec holding model's weights (float32) and tok's vocabulary."""
    import_ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec

    cfg = model.cfg
    problem = unmappable(cfg)
    if problem is not None:
        raise NMTError(f"cannot export to CTranslate2: {problem}")
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers),
        cfg.heads,
        pre_norm=True,
        activation=activation[cfg.activation],
    )
    positions = _np(model.positions)  # (max_positions, D), our interleaved sin/cos table
    enc, dec = spec.encoder, spec.decoder
    enc.embeddings[0].weight = _np(model.src_embed.weight)
    dec.embeddings.weight = _np(model.tgt_embed.weight)
    enc.position_encodings.encodings = positions
    dec.position_encodings.encodings = positions
    enc.scale_embeddings = dec.scale_embeddings = True  # x sqrt(d_model), as model._embed
    for layer_spec, layer in zip(enc.layer, model.encoder):
        _self_attention(layer_spec.self_attention, layer.attn, layer.norm1)
        _ffn(layer_spec.ffn, layer.ffn, layer.norm2)
    for layer_spec, layer in zip(dec.layer, model.decoder):
        _self_attention(layer_spec.self_attention, layer.self_attn, layer.norm1)
        _cross_attention(layer_spec.attention, layer.cross_attn, layer.norm2)
        _ffn(layer_spec.ffn, layer.ffn, layer.norm3)
    _norm(enc.layer_norm, model.encoder_norm)
    _norm(dec.layer_norm, model.decoder_norm)
    output = model.tgt_embed.weight if model.output is None else model.output.weight
    _linear(dec.projection, output, None)

    pieces = [tok.sp.id_to_piece(i) for i in range(len(tok))]
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    spec.config.unk_token = tok.sp.id_to_piece(tok.sp.unk_id())
    spec.config.bos_token = tok.sp.id_to_piece(tok.sp.bos_id())
    spec.config.eos_token = tok.sp.id_to_piece(tok.sp.eos_id())
    spec.config.decoder_start_token = spec.config.bos_token
    spec.config.add_source_eos = True  # the encoder reads pieces + EOS (tokenizer.frame_source)
    spec.config.layer_norm_epsilon = 1e-5  # torch.nn.LayerNorm's default
    return spec
