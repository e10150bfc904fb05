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

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
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

/// The µP constants. Defaults are the values MiniCPM searched on its 9M proxy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MupConfig {
    pub parameterization: Parameterization,
    /// d_base: the width at which µP and SP coincide (m = 1).
    pub base_width: usize,
    pub scale_emb: f64,
    pub scale_depth: f64,
    pub init_std: f64,
}

impl Default for MupConfig {
    fn default() -> Self {
        Self { parameterization: Parameterization::Mup, base_width: 256, scale_emb: 12.0, scale_depth: 1.4, init_std: 0.1 }
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
        if self.is_mup() {
            self.scale_depth / (depth as f64).sqrt()
        } else {
            1.0
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
        Ok(())
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
