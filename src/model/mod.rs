//! The µP MiniCPM proxy model: its shape and exact counts ([`shape`]), the µP rules ([`mup`]),
//! the burn network ([`transformer`]), the fused kernels it uses ([`fused`]; on the CPU, causal
//! attention in one pass per head: [`attention`]; RMSNorm, SwiGLU's gating, RoPE and the
//! cross-entropy in one pass each way: [`pointwise`]; linear layers: [`gemm`]), the arithmetic of
//! its matrix products ([`precision`]) and the training memory a shape needs ([`memory`]). The
//! coordinate check trains, so it lives in `train::coord_check`.

pub mod attention;
pub mod fused;
pub mod gemm;
pub mod memory;
pub mod mup;
pub mod pointwise;
pub mod precision;
pub mod shape;
pub mod transformer;

use serde::Serialize;

use crate::format::{si, thousands};
use mup::{MupConfig, ParamGroup};
use shape::{FlopsPerToken, ModelShape};

/// Everything `windtunnel model` prints about a shape: counts, FLOPs per token and µP factors.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub preset: Option<String>,
    #[serde(flatten)]
    pub shape: ModelShape,
    pub head_dim: usize,
    pub non_embedding_params: u64,
    pub embedding_params: u64,
    pub total_params: u64,
    pub attention_params_per_layer: u64,
    pub ffn_params_per_layer: u64,
    pub norm_params_per_layer: u64,
    pub seq_len: usize,
    /// Training FLOPs per token (forward + backward), all parts.
    pub flops_per_token: u64,
    pub flops_per_token_dense: u64,
    pub flops_per_token_attention: u64,
    pub flops_per_token_lm_head: u64,
    /// Sequences per batch of the memory estimate.
    pub batch_size: usize,
    /// Training memory at `batch_size` × `seq_len` (see [`memory`]).
    pub training_memory: memory::MemoryEstimate,
    pub mup: MupReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct MupReport {
    #[serde(flatten)]
    pub config: MupConfig,
    pub width_multiplier: f64,
    pub embedding_multiplier: f64,
    pub residual_multiplier: f64,
    pub logit_multiplier: f64,
    pub hidden_init_std: f64,
    pub hidden_lr_multiplier: f64,
}

impl ModelReport {
    pub fn new(preset: Option<&str>, shape: ModelShape, seq_len: usize, batch_size: usize, mup: MupConfig) -> Self {
        let FlopsPerToken { dense, attention, lm_head, total } = shape.flops_per_token(seq_len);
        Self {
            preset: preset.map(str::to_string),
            shape,
            head_dim: shape.head_dim(),
            non_embedding_params: shape.non_embedding_params(),
            embedding_params: shape.embedding_params(),
            total_params: shape.total_params(),
            attention_params_per_layer: shape.attention_params_per_layer(),
            ffn_params_per_layer: shape.ffn_params_per_layer(),
            norm_params_per_layer: shape.norm_params_per_layer(),
            seq_len,
            flops_per_token: total,
            flops_per_token_dense: dense,
            flops_per_token_attention: attention,
            flops_per_token_lm_head: lm_head,
            batch_size,
            training_memory: memory::MemoryEstimate::training(&shape, batch_size, seq_len),
            mup: MupReport {
                config: mup,
                width_multiplier: mup.width_multiplier(shape.width),
                embedding_multiplier: mup.embedding_multiplier(),
                residual_multiplier: mup.residual_multiplier(shape.depth),
                logit_multiplier: mup.logit_multiplier(shape.width),
                hidden_init_std: mup.init_std(ParamGroup::HiddenMatrix, shape.width),
                hidden_lr_multiplier: mup.lr_multiplier(ParamGroup::HiddenMatrix, shape.width),
            },
        }
    }
}

impl std::fmt::Display for ModelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.shape;
        if let Some(p) = &self.preset {
            writeln!(f, "preset               {p}")?;
        }
        writeln!(f, "width (d_model)      {}", s.width)?;
        writeln!(f, "depth (layers)       {}", s.depth)?;
        writeln!(f, "heads / kv heads     {} / {}  (head dim {})", s.heads, s.kv_heads, self.head_dim)?;
        writeln!(f, "ffn width            {}  (SwiGLU, 3 matrices)", s.ffn_width)?;
        writeln!(f, "vocab                {}", thousands(s.vocab as u64))?;
        writeln!(f)?;
        writeln!(f, "parameters")?;
        writeln!(f, "  non-embedding (N)  {:>17}  ({})", thousands(self.non_embedding_params), si(self.non_embedding_params as f64))?;
        writeln!(f, "  embedding (tied)   {:>17}  ({})", thousands(self.embedding_params), si(self.embedding_params as f64))?;
        writeln!(f, "  total              {:>17}  ({})", thousands(self.total_params), si(self.total_params as f64))?;
        writeln!(
            f,
            "  per layer          attention {} + ffn {} + norms {}",
            thousands(self.attention_params_per_layer),
            thousands(self.ffn_params_per_layer),
            thousands(self.norm_params_per_layer)
        )?;
        writeln!(f)?;
        writeln!(f, "training FLOPs per token (forward + backward, seq len {})", self.seq_len)?;
        writeln!(f, "  dense (6N)         {:>17}", thousands(self.flops_per_token_dense))?;
        writeln!(f, "  attention scores   {:>17}  (12 · depth · seq · heads · head dim)", thousands(self.flops_per_token_attention))?;
        writeln!(f, "  LM head            {:>17}  (6 · width · vocab)", thousands(self.flops_per_token_lm_head))?;
        writeln!(
            f,
            "  total              {:>17}  ({:.3}× 6N)",
            thousands(self.flops_per_token),
            self.flops_per_token as f64 / self.flops_per_token_dense as f64
        )?;
        writeln!(f)?;
        writeln!(f, "training memory (fp32, batch {} × seq len {})", self.batch_size, self.seq_len)?;
        writeln!(f, "  {}", self.training_memory)?;
        writeln!(f)?;
        let m = &self.mup;
        writeln!(f, "µP ({}, base width {})", m.config.parameterization, m.config.base_width)?;
        writeln!(f, "  width multiplier m {:.4}", m.width_multiplier)?;
        writeln!(f, "  embedding × {:.4}   residual × {:.4}   logits × {:.4}", m.embedding_multiplier, m.residual_multiplier, m.logit_multiplier)?;
        write!(f, "  hidden matrices: init std {:.5}, learning rate × {:.4}", m.hidden_init_std, m.hidden_lr_multiplier)
    }
}
