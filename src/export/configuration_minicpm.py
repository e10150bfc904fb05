# coding=utf-8
# The configuration class of a MiniCPM model, written by `windtunnel export` beside config.json so
# that `transformers.AutoConfig.from_pretrained(DIR, trust_remote_code=True)` loads the exported
# config the way MiniCPM's own checkpoints load theirs (an `auto_map` entry naming this file).
#
# The fields are MiniCPM's: a Llama-style decoder (RMSNorm, rotary embeddings, SwiGLU, tied
# embeddings, grouped-query attention) with its µP constants: the embedding output is multiplied by
# `scale_emb`, each residual branch by `scale_depth / sqrt(num_hidden_layers)`, and the logits are
# divided by `hidden_size / dim_model_base`. The modeling code is MiniCPM's own
# (`modeling_minicpm.py` of openbmb/MiniCPM-2B-sft-bf16), which config.json's `auto_map` names.
from transformers.configuration_utils import PretrainedConfig


class MiniCPMConfig(PretrainedConfig):
    model_type = "minicpm"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=122753,
        hidden_size=2304,
        intermediate_size=5760,
        num_hidden_layers=40,
        num_attention_heads=36,
        num_key_value_heads=None,
        hidden_act="silu",
        max_position_embeddings=4096,
        initializer_range=0.1,
        rms_norm_eps=1e-5,
        use_cache=True,
        pad_token_id=None,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        rope_scaling=None,
        attention_bias=False,
        attention_dropout=0.0,
        scale_emb=12,
        dim_model_base=256,
        scale_depth=1.4,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.scale_emb = scale_emb
        self.dim_model_base = dim_model_base
        self.scale_depth = scale_depth
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
