//! The arithmetic of the matrix products: `[training] precision` in a run file.
//!
//! - `fp32` (the default): every tensor is f32. On the CPU that is exact f32 arithmetic. On burn
//!   0.21's CUDA backend the autotuner may choose tensor-core matmul kernels, which read f32
//!   inputs as TF32 (cubek-matmul's `adjust_dtypes`), so `fp32` there is "f32 storage, TF32
//!   allowed"; strict f32 matmuls cannot be forced in this burn version.
//! - `tf32`: the same computation as `fp32` on burn 0.21 (named for runs that say so explicitly,
//!   as PyTorch users do with `allow_tf32`).
//! - `bf16-mixed`: the inputs of every matrix product (the seven projections of each block, the
//!   attention scores and mixing, the tied output layer) are cast to bf16 and the product cast
//!   back to f32, as PyTorch's bf16 autocast does; weights, optimizer state, norms, softmax and the
//!   loss stay f32 (fp32 master weights). Gradients flow through the casts.
//!
//! The CPU backend trains in fp32 whatever the run file says (`train` notes it): bf16 brings the
//! CPU no speed, and bit-exact determinism is pinned in f32.

use burn::tensor::backend::Backend;
use burn::tensor::module::linear;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use super::fused::{self, FusedOps};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    Fp32,
    Tf32,
    Bf16Mixed,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Self::Fp32
    }

    fn low(&self) -> bool {
        *self == Self::Bf16Mixed
    }

    fn down<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        x.cast(FloatDType::BF16)
    }

    fn up<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        x.cast(FloatDType::F32)
    }

    /// `x · weight` (weight `[in, out]`) at this precision.
    pub fn linear<B: FusedOps, const D: usize>(&self, x: Tensor<B, D>, weight: Tensor<B, 2>) -> Tensor<B, D> {
        if self.low() {
            Self::up(linear(Self::down(x), Self::down(weight), None))
        } else {
            fused::linear(x.clone(), weight.clone()).unwrap_or_else(|| linear(x, weight, None))
        }
    }

    /// `a · b` (batched) at this precision.
    pub fn matmul<B: Backend, const D: usize>(&self, a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
        if self.low() {
            Self::up(Self::down(a).matmul(Self::down(b)))
        } else {
            a.matmul(b)
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    /// The names `Display` writes (and run files use).
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Fp32, Self::Tf32, Self::Bf16Mixed]
            .into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| format!("unknown precision `{s}`; use fp32, tf32 or bf16-mixed"))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
            Self::Bf16Mixed => "bf16-mixed",
        })
    }
}
