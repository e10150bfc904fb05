//! The shape of a MiniCPM-style decoder and everything that follows from it without building it:
//! exact parameter counts, FLOPs per token, and the named presets (MiniCPM-1.2B/2.4B and the seven
//! wind-tunnel proxies of MiniCPM Table 8).
//!
//! Conventions (MiniCPM, Chinchilla, PaLM):
//! - `non_embedding_params` (N) counts every weight except the tied token embedding, so RMSNorm
//!   weights are included. For MiniCPM-2.4B this gives 2,442,057,984 and for MiniCPM-1.2B
//!   1,247,442,432, the published numbers.
//! - `total_params` = N + vocab × width (the embedding, tied with the LM head, counted once).
//! - Training FLOPs per token = forward + backward = 3 × forward:
//!   - `dense`: 6·N (every weight is used in one multiply-add per token, ×3);
//!   - `attention`: 12 · depth · seq_len · n_heads · head_dim, the QKᵀ and softmax·V products over
//!     the full context (PaLM's appendix B and Chinchilla's appendix F count them so; no causal
//!     discount);
//!   - `lm_head`: 6 · width · vocab (the tied output projection, which 6N leaves out; Porian et
//!     al. 2024 show that omitting it bends compute-optimal fits at small scale).

use serde::{Deserialize, Serialize};

/// Errors for shapes that cannot exist. Each names the field and says how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("`{field}` must be at least 1 (got 0)")]
    Zero { field: &'static str },
    #[error("`heads` ({heads}) must divide `width` ({width}): the head dimension is width / heads; try heads = {suggestion}")]
    HeadsDoNotDivideWidth { width: usize, heads: usize, suggestion: usize },
    #[error("`kv_heads` ({kv_heads}) must divide `heads` ({heads}) for grouped-query attention; divisors of {heads}: {divisors}")]
    KvHeadsDoNotDivideHeads { heads: usize, kv_heads: usize, divisors: String },
    #[error("head dimension width / heads = {head_dim} must be even for rotary position embedding; change `width` or `heads`")]
    OddHeadDim { head_dim: usize },
    #[error("the shape has {params} parameters, beyond the {max} any run can hold; check `width`, `depth`, `ffn_width` and `vocab`")]
    TooLarge { params: String, max: String },
    #[error("unknown preset `{name}`; known presets: {known}")]
    UnknownPreset { name: String, known: String },
}

/// Shape of the decoder-only transformer (MiniCPM architecture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    /// d_model.
    pub width: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Query heads; head_dim = width / heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention); must divide `heads`.
    pub kv_heads: usize,
    /// Hidden size of the SwiGLU feed-forward (each of its three matrices is width × ffn_width).
    pub ffn_width: usize,
    /// Vocabulary size (rows of the tied embedding).
    pub vocab: usize,
}

/// The most parameters a shape may have (10^14, fifty times the largest dense model trained so
/// far): a bound that keeps every count and FLOP figure of a valid shape inside u64.
pub const MAX_PARAMS: f64 = 1e14;

/// MiniCPM's SwiGLU hidden size as a multiple of the width (d_ff = 2.5·d).
pub const FFN_MULTIPLIER: f64 = 2.5;
/// MiniCPM's head dimension, held fixed as width grows (heads = width / 64).
pub const HEAD_DIM: usize = 64;

/// The SwiGLU hidden size MiniCPM uses at `width`: 2.5 × width, rounded down.
pub const fn default_ffn_width(width: usize) -> usize {
    width * 5 / 2
}

/// Vocabulary of MiniCPM-1.2B, the default for the wind-tunnel presets.
pub const MINICPM_1_2B_VOCAB: usize = 73_440;
/// Vocabulary of MiniCPM-2.4B.
pub const MINICPM_2_4B_VOCAB: usize = 122_753;

/// A named shape. `vocab_fixed` is true for the real MiniCPM models, whose vocabulary is part of
/// the published configuration; the wind-tunnel proxies take the 1.2B vocabulary unless given one.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub shape: ModelShape,
    pub description: &'static str,
}

const fn proxy(width: usize, depth: usize, heads: usize) -> ModelShape {
    ModelShape { width, depth, heads, kv_heads: heads, ffn_width: default_ffn_width(width), vocab: MINICPM_1_2B_VOCAB }
}

/// Every preset: the two MiniCPM models and the Table 8 wind-tunnel proxies (d_ff = 2.5·d, head dim 64).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "minicpm-1.2b",
        shape: ModelShape { width: 1536, depth: 52, heads: 24, kv_heads: 8, ffn_width: 3840, vocab: MINICPM_1_2B_VOCAB },
        description: "MiniCPM-1.2B (GQA, 1,247,442,432 non-embedding parameters)",
    },
    Preset {
        name: "minicpm-2.4b",
        shape: ModelShape { width: 2304, depth: 40, heads: 36, kv_heads: 36, ffn_width: 5760, vocab: MINICPM_2_4B_VOCAB },
        description: "MiniCPM-2.4B (2,442,057,984 non-embedding parameters)",
    },
    Preset { name: "9m", shape: proxy(320, 8, 5), description: "MiniCPM Table 8 wind-tunnel proxy, µP search shape" },
    Preset { name: "36m", shape: proxy(512, 12, 8), description: "MiniCPM Table 8 wind-tunnel proxy" },
    Preset { name: "66m", shape: proxy(640, 14, 10), description: "MiniCPM Table 8 wind-tunnel proxy" },
    Preset { name: "109m", shape: proxy(768, 16, 12), description: "MiniCPM Table 8 wind-tunnel proxy" },
    Preset { name: "166m", shape: proxy(896, 18, 14), description: "MiniCPM Table 8 wind-tunnel proxy" },
    Preset { name: "241m", shape: proxy(1024, 20, 16), description: "MiniCPM Table 8 wind-tunnel proxy" },
    Preset { name: "499m", shape: proxy(1344, 24, 21), description: "MiniCPM Table 8 wind-tunnel proxy" },
];

/// Look a preset up by name (case-insensitive).
pub fn preset(name: &str) -> Result<ModelShape, ShapeError> {
    PRESETS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.shape)
        .ok_or_else(|| ShapeError::UnknownPreset { name: name.to_string(), known: PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ") })
}

/// Training FLOPs per token, by part (forward + backward).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlopsPerToken {
    /// 6·N.
    pub dense: u64,
    /// 12 · depth · seq_len · heads · head_dim.
    pub attention: u64,
    /// 6 · width · vocab.
    pub lm_head: u64,
    /// dense + attention + lm_head.
    pub total: u64,
}

impl ModelShape {
    /// Refuse shapes that cannot exist, naming the field.
    pub fn validate(&self) -> Result<(), ShapeError> {
        for (field, value) in [
            ("width", self.width),
            ("depth", self.depth),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("ffn_width", self.ffn_width),
            ("vocab", self.vocab),
        ] {
            if value == 0 {
                return Err(ShapeError::Zero { field });
            }
        }
        if !self.width.is_multiple_of(self.heads) {
            let suggestion = (1..=self.heads.max(1) * 2).filter(|h| self.width.is_multiple_of(*h)).min_by_key(|h| h.abs_diff(self.heads)).unwrap_or(1);
            return Err(ShapeError::HeadsDoNotDivideWidth { width: self.width, heads: self.heads, suggestion });
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            let divisors = (1..=self.heads).filter(|k| self.heads.is_multiple_of(*k)).map(|k| k.to_string()).collect::<Vec<_>>();
            return Err(ShapeError::KvHeadsDoNotDivideHeads { heads: self.heads, kv_heads: self.kv_heads, divisors: divisors.join(", ") });
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ShapeError::OddHeadDim { head_dim: self.head_dim() });
        }
        // Counted in f64 first, so the u64 counts below cannot overflow for any shape that passes.
        let (d, f, l, v) = (self.width as f64, self.ffn_width as f64, self.depth as f64, self.vocab as f64);
        let params = l * (4.0 * d * d + 3.0 * d * f + 2.0 * d) + d + v * d;
        if params > MAX_PARAMS {
            return Err(ShapeError::TooLarge { params: format!("{params:.3e}"), max: format!("{MAX_PARAMS:.0e}") });
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Width of the key and value projections: kv_heads × head_dim.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim()
    }

    /// Weights of one attention block: Wq and Wo (width × width), Wk and Wv (width × kv_width).
    pub fn attention_params_per_layer(&self) -> u64 {
        let (d, kv) = (self.width as u64, self.kv_width() as u64);
        2 * d * d + 2 * d * kv
    }

    /// Weights of one SwiGLU feed-forward: gate, up (width × ffn) and down (ffn × width).
    pub fn ffn_params_per_layer(&self) -> u64 {
        3 * self.width as u64 * self.ffn_width as u64
    }

    /// The two RMSNorm weight vectors of a block.
    pub fn norm_params_per_layer(&self) -> u64 {
        2 * self.width as u64
    }

    /// N: every parameter but the tied embedding (MiniCPM's convention; norms included).
    pub fn non_embedding_params(&self) -> u64 {
        let per_layer = self.attention_params_per_layer() + self.ffn_params_per_layer() + self.norm_params_per_layer();
        self.depth as u64 * per_layer + self.width as u64 // final norm
    }

    /// The tied token embedding / LM head: vocab × width.
    pub fn embedding_params(&self) -> u64 {
        self.vocab as u64 * self.width as u64
    }

    pub fn total_params(&self) -> u64 {
        self.non_embedding_params() + self.embedding_params()
    }

    /// Training FLOPs per token at a given sequence length (see the module comment).
    pub fn flops_per_token(&self, seq_len: usize) -> FlopsPerToken {
        let dense = 6 * self.non_embedding_params();
        // Saturating: a valid shape's counts fit, but seq_len comes from a run file.
        let attention = (12 * self.depth as u64).saturating_mul(seq_len as u64).saturating_mul((self.heads * self.head_dim()) as u64);
        let lm_head = 6 * self.width as u64 * self.vocab as u64;
        FlopsPerToken { dense, attention, lm_head, total: dense.saturating_add(attention).saturating_add(lm_head) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minicpm_non_embedding_counts_are_the_published_ones() {
        assert_eq!(preset("minicpm-2.4b").unwrap().non_embedding_params(), 2_442_057_984);
        assert_eq!(preset("minicpm-1.2b").unwrap().non_embedding_params(), 1_247_442_432);
    }

    #[test]
    fn wind_tunnel_presets_have_head_dim_64_and_their_nominal_size() {
        for (name, nominal_millions) in [("9m", 9.0), ("36m", 36.0), ("66m", 66.0), ("109m", 109.0), ("166m", 166.0), ("241m", 241.0), ("499m", 499.0)] {
            let s = preset(name).unwrap();
            s.validate().unwrap();
            assert_eq!(s.head_dim(), 64, "{name}");
            assert_eq!(s.ffn_width * 2, s.width * 5, "{name}");
            let n = s.non_embedding_params() as f64 / 1e6;
            assert!((n - nominal_millions).abs() / nominal_millions < 0.07, "{name}: N = {n:.1}M");
        }
        assert_eq!(preset("9m").unwrap().non_embedding_params(), 9_426_240);
    }

    #[test]
    fn flops_parts_add_up_and_follow_the_formulas() {
        let s = preset("9m").unwrap();
        let f = s.flops_per_token(512);
        assert_eq!(f.dense, 6 * 9_426_240);
        assert_eq!(f.attention, 12 * 8 * 512 * 320);
        assert_eq!(f.lm_head, 6 * 320 * MINICPM_1_2B_VOCAB as u64);
        assert_eq!(f.total, f.dense + f.attention + f.lm_head);
    }

    #[test]
    fn impossible_shapes_name_the_field() {
        let ok = ModelShape { width: 256, depth: 4, heads: 4, kv_heads: 2, ffn_width: 640, vocab: 256 };
        ok.validate().unwrap();
        let e = ModelShape { heads: 3, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("`heads` (3) must divide `width` (256)"), "{e}");
        let e = ModelShape { kv_heads: 3, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("`kv_heads` (3) must divide `heads` (4)"), "{e}");
        let e = ModelShape { depth: 0, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("`depth`"), "{e}");
        let e = ModelShape { width: 12, heads: 4, kv_heads: 4, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("even"), "{e}");
        assert!(preset("7b").unwrap_err().to_string().contains("minicpm-1.2b"));
    }
}
