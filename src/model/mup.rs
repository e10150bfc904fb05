//! The µP rules of MiniCPM (Table 7), in one place.
//!
//! With width multiplier `m = width / base_width`:
//!
//! | operation          | µP                                                   | standard (SP) |
//! |--------------------|------------------------------------------------------|---------------|
//! | embedding output   | × `scale_emb`                                        | × 1           |
//! | residual branch    | × `scale_depth / sqrt(depth)` before the add         | × 1           |
//! | init, hidden 2-D   | N(0, (`init_std / sqrt(m)`)²)                        | N(0, `init_std`²) |
//! | init, embedding    | N(0, `init_std`²)                                    | N(0, `init_std`²) |
//! | init, norm weights | 1                                                    | 1             |
//! | Adam lr, hidden 2-D| `lr / m`                                             | `lr`          |
//! | Adam lr, others    | `lr`                                                 | `lr`          |
//! | LM-head logits     | × `1 / m`                                            | × 1           |
//!
//! "Hidden 2-D" are the matrices whose both dimensions grow with width: Wq, Wk, Wv, Wo and the
//! three SwiGLU matrices. The embedding (vocab × width) has one fixed dimension and keeps `lr`.
//! Head dimension is held fixed as width grows (MiniCPM: 64), so the usual 1/sqrt(head_dim)
//! attention scale is already µP-correct.
//!
//! SP is the same network with every multiplier 1, no width scaling of the init and one learning
//! rate: the comparison a coordinate check and a learning-rate-transfer sweep are made against.
//!
//! **Depth** (`mup.depth_rule`, with `mup.base_depth` L₀ the depth the hyperparameters were tuned
//! at, and m_L = L / L₀). MiniCPM's rule scales each residual branch by 1/√L and nothing else;
//! CompleteP (Dey et al. 2025, arXiv 2505.01618, Table 1 with α = 1, as EleutherAI's nanoGPT-mup
//! implements it, including the AdamW ε of hidden layers that arXiv 2512.22382 found missing)
//! also scales AdamW's ε and weight decay:
//!
//! | under µP, depth L, width multiplier m | `minicpm` (default) | `completep` (α = 1) | `none` |
//! |---|---|---|---|
//! | residual branch | `scale_depth / √L` | `scale_depth / √L₀ · (L₀/L)` | `scale_depth / √L₀` |
//! | Adam lr, hidden 2-D | `lr / m` | `lr / m · m_L^(α−1) = lr / m` | `lr / m` |
//! | Adam lr, norms, embedding | `lr` | `lr` (hidden norms: `· m_L^(α−1) = 1`) | `lr` |
//! | init | as above | as above (no depth term) | as above |
//! | AdamW ε, hidden 2-D and norms | `ε` | `ε / (m · m_L)` | `ε` |
//! | AdamW ε, embedding and final norm | `ε` | `ε / m` | `ε` |
//! | weight decay, hidden 2-D | `λ` | `λ · m` (so lr·λ is width-free) | `λ` |
//!
//! The three rules agree at L = L₀ except for CompleteP's width terms on ε and λ (MiniCPM's
//! width rules have none), so a learning rate tuned at the base depth is the same model's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Parameterization {
    /// Maximal-update parameterization (MiniCPM's rules).
    #[default]
    Mup,
    /// Standard parameterization, for comparison.
    Sp,
}

impl std::str::FromStr for Parameterization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mup" | "µp" | "mu-p" => Ok(Self::Mup),
            "sp" | "standard" => Ok(Self::Sp),
            other => Err(format!("unknown parameterization `{other}`; use `mup` or `sp`")),
        }
    }
}

impl std::fmt::Display for Parameterization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mup => "mup",
            Self::Sp => "sp",
        })
    }
}

/// How the hyperparameters follow depth (see the module doc's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DepthRule {
    /// Residual branches × scale_depth / √depth (MiniCPM).
    #[default]
    Minicpm,
    /// CompleteP (α = 1): residual branches × 1/depth, and AdamW's ε and weight decay scaled.
    Completep,
    /// No depth dependence: residual branches × scale_depth / √base_depth at every depth.
    None,
}

impl DepthRule {
    pub fn is_default(&self) -> bool {
        *self == Self::Minicpm
    }
}

impl std::fmt::Display for DepthRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Minicpm => "minicpm",
            Self::Completep => "completep",
            Self::None => "none",
        })
    }
}

impl std::str::FromStr for DepthRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minicpm" => Ok(Self::Minicpm),
            "completep" => Ok(Self::Completep),
            "none" => Ok(Self::None),
            other => Err(format!("unknown depth rule `{other}`; use minicpm, completep or none")),
        }
    }
}

/// The µP constants. Defaults are the values MiniCPM searched on its 9M proxy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MupConfig {
    /// µP (MiniCPM's rules) or standard parameterization, for comparison.
    pub parameterization: Parameterization,
    /// d_base: the width at which µP and SP coincide (m = 1).
    pub base_width: usize,
    /// Multiplier of the embedding output (MiniCPM: 12).
    pub scale_emb: f64,
    /// Residual-branch multiplier numerator: branches are scaled by scale_depth / √depth under the minicpm rule (MiniCPM: 1.4).
    pub scale_depth: f64,
    /// Standard deviation of the initialisation at the base width (hidden matrices: divided by √m).
    pub init_std: f64,
    /// How hyperparameters follow depth [default: minicpm]. Left out of the written config at its
    /// default, so run ids and files from before it existed stay the same.
    #[serde(skip_serializing_if = "DepthRule::is_default")]
    pub depth_rule: DepthRule,
    /// L₀: the depth the hyperparameters were tuned at (required by `completep` and `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_depth: Option<usize>,
}

impl Default for MupConfig {
    fn default() -> Self {
        Self {
            parameterization: Parameterization::Mup,
            base_width: 256,
            scale_emb: 12.0,
            scale_depth: 1.4,
            init_std: 0.1,
            depth_rule: DepthRule::Minicpm,
            base_depth: None,
        }
    }
}

/// Whether a parameter follows the µP "hidden matrix" rules (init and lr scaled by m) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamGroup {
    /// Wq, Wk, Wv, Wo, W_gate, W_up, W_down: lr / m.
    HiddenMatrix,
    /// The tied embedding / LM head: lr.
    Embedding,
    /// RMSNorm weights: lr.
    Norm,
}

impl MupConfig {
    pub fn is_mup(&self) -> bool {
        self.parameterization == Parameterization::Mup
    }

    /// m = width / base_width (1 under SP).
    pub fn width_multiplier(&self, width: usize) -> f64 {
        if self.is_mup() {
            width as f64 / self.base_width as f64
        } else {
            1.0
        }
    }

    /// Multiplier on the embedding output.
    pub fn embedding_multiplier(&self) -> f64 {
        if self.is_mup() {
            self.scale_emb
        } else {
            1.0
        }
    }

    /// Multiplier on each block's attention and FFN output before the residual add.
    pub fn residual_multiplier(&self, depth: usize) -> f64 {
        if !self.is_mup() {
            return 1.0;
        }
        let base = self.base_depth.unwrap_or(depth) as f64;
        match self.depth_rule {
            DepthRule::Minicpm => self.scale_depth / (depth as f64).sqrt(),
            DepthRule::Completep => self.scale_depth / base.sqrt() * (base / depth as f64),
            DepthRule::None => self.scale_depth / base.sqrt(),
        }
    }

    /// m_L = depth / base_depth (1 without a base depth).
    pub fn depth_multiplier(&self, depth: usize) -> f64 {
        self.base_depth.map_or(1.0, |b| depth as f64 / b as f64)
    }

    /// Factor on AdamW's ε for a parameter group (CompleteP; 1 under the other rules and SP).
    /// `final_norm` tells the last norm (grouped with the embedding) from the blocks' norms.
    pub fn eps_multiplier(&self, group: ParamGroup, width: usize, depth: usize, final_norm: bool) -> f64 {
        if !self.is_mup() || self.depth_rule != DepthRule::Completep {
            return 1.0;
        }
        let m = self.width_multiplier(width);
        match group {
            ParamGroup::Embedding => 1.0 / m,
            ParamGroup::Norm if final_norm => 1.0 / m,
            ParamGroup::HiddenMatrix | ParamGroup::Norm => 1.0 / (m * self.depth_multiplier(depth)),
        }
    }

    /// Factor on the weight decay of a parameter group (CompleteP: × m on hidden matrices).
    pub fn weight_decay_multiplier(&self, group: ParamGroup, width: usize) -> f64 {
        match (self.is_mup() && self.depth_rule == DepthRule::Completep, group) {
            (true, ParamGroup::HiddenMatrix) => self.width_multiplier(width),
            _ => 1.0,
        }
    }

    /// Multiplier on the logits (the LM head input is divided by m).
    pub fn logit_multiplier(&self, width: usize) -> f64 {
        1.0 / self.width_multiplier(width)
    }

    /// Standard deviation of the normal init of a parameter group (norm weights start at 1).
    pub fn init_std(&self, group: ParamGroup, width: usize) -> f64 {
        match group {
            ParamGroup::HiddenMatrix => self.init_std / self.width_multiplier(width).sqrt(),
            ParamGroup::Embedding => self.init_std,
            ParamGroup::Norm => 0.0,
        }
    }

    /// Factor on the base learning rate for a parameter group: 1/m for hidden matrices under µP.
    pub fn lr_multiplier(&self, group: ParamGroup, width: usize) -> f64 {
        match group {
            ParamGroup::HiddenMatrix => 1.0 / self.width_multiplier(width),
            ParamGroup::Embedding | ParamGroup::Norm => 1.0,
        }
    }

    /// Refuse constants that make no sense, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("`base_width` must be at least 1".into());
        }
        for (field, v) in [("scale_emb", self.scale_emb), ("scale_depth", self.scale_depth), ("init_std", self.init_std)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{field}` must be a positive number (got {v})"));
            }
        }
        match (self.depth_rule, self.base_depth) {
            (_, Some(0)) => Err("`base_depth` must be at least 1".into()),
            (DepthRule::Completep | DepthRule::None, None) => Err(format!(
                "`depth_rule = \"{}\"` needs `base_depth`, the depth the learning rate was tuned at (e.g. mup = {{ depth_rule = \"{}\", base_depth = 2 }})",
                self.depth_rule, self.depth_rule
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mup_rules_follow_minicpm_table_7() {
        let c = MupConfig::default();
        // The 9M proxy: width 320, base 256, m = 1.25.
        assert_eq!(c.width_multiplier(320), 1.25);
        assert_eq!(c.embedding_multiplier(), 12.0);
        assert!((c.residual_multiplier(8) - 1.4 / 8f64.sqrt()).abs() < 1e-15);
        assert_eq!(c.logit_multiplier(512), 0.5);
        assert!((c.init_std(ParamGroup::HiddenMatrix, 1024) - 0.05).abs() < 1e-15);
        assert_eq!(c.init_std(ParamGroup::Embedding, 1024), 0.1);
        assert_eq!(c.lr_multiplier(ParamGroup::HiddenMatrix, 1024), 0.25);
        assert_eq!(c.lr_multiplier(ParamGroup::Embedding, 1024), 1.0);
    }

    /// Each depth rule's multipliers against the formulas of the module doc's table (CompleteP's
    /// Table 1 at α = 1, and nanoGPT-mup's optimizer groups), at several depths.
    #[test]
    fn depth_rules_follow_their_papers() {
        let base = MupConfig { base_width: 64, base_depth: Some(2), ..Default::default() };
        let completep = MupConfig { depth_rule: DepthRule::Completep, ..base };
        let none = MupConfig { depth_rule: DepthRule::None, ..base };
        for depth in [1usize, 2, 4, 8, 16, 40] {
            let m_l = depth as f64 / 2.0;
            assert_eq!(base.residual_multiplier(depth), 1.4 / (depth as f64).sqrt(), "MiniCPM's rule is unchanged");
            assert!((completep.residual_multiplier(depth) - 1.4 / 2f64.sqrt() / m_l).abs() < 1e-15);
            assert_eq!(none.residual_multiplier(depth), 1.4 / 2f64.sqrt());
            for width in [64usize, 256] {
                let m = width as f64 / 64.0;
                assert_eq!(completep.lr_multiplier(ParamGroup::HiddenMatrix, width), 1.0 / m, "α = 1: no depth term on the hidden lr");
                assert!((completep.eps_multiplier(ParamGroup::HiddenMatrix, width, depth, false) - 1.0 / (m * m_l)).abs() < 1e-15);
                assert!((completep.eps_multiplier(ParamGroup::Norm, width, depth, false) - 1.0 / (m * m_l)).abs() < 1e-15);
                assert_eq!(completep.eps_multiplier(ParamGroup::Norm, width, depth, true), 1.0 / m);
                assert_eq!(completep.eps_multiplier(ParamGroup::Embedding, width, depth, false), 1.0 / m);
                assert_eq!(completep.weight_decay_multiplier(ParamGroup::HiddenMatrix, width), m);
                assert_eq!(completep.weight_decay_multiplier(ParamGroup::Embedding, width), 1.0);
                for rule in [base, none] {
                    assert_eq!(rule.eps_multiplier(ParamGroup::HiddenMatrix, width, depth, false), 1.0);
                    assert_eq!(rule.weight_decay_multiplier(ParamGroup::HiddenMatrix, width), 1.0);
                }
            }
        }
        // At the base depth the residual multipliers of the three rules agree.
        assert!((completep.residual_multiplier(2) - base.residual_multiplier(2)).abs() < 1e-15);
        assert!((none.residual_multiplier(2) - base.residual_multiplier(2)).abs() < 1e-15);
        // CompleteP and none need a base depth; the default written config is unchanged.
        let e = MupConfig { depth_rule: DepthRule::Completep, base_depth: None, ..base }.validate().unwrap_err();
        assert!(e.contains("needs `base_depth`"), "{e}");
        let written = serde_json::to_string(&MupConfig::default()).unwrap();
        assert!(!written.contains("depth_rule") && !written.contains("base_depth"), "{written}");
    }

    #[test]
    fn sp_has_no_multipliers() {
        let c = MupConfig { parameterization: Parameterization::Sp, ..Default::default() };
        assert_eq!(c.width_multiplier(1024), 1.0);
        assert_eq!(c.embedding_multiplier(), 1.0);
        assert_eq!(c.residual_multiplier(40), 1.0);
        assert_eq!(c.lr_multiplier(ParamGroup::HiddenMatrix, 1024), 1.0);
        assert_eq!(c.init_std(ParamGroup::HiddenMatrix, 1024), 0.1);
    }
}
