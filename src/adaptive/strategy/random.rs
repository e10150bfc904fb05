//! `random`: uniformly at random among the affordable candidates, a baseline. The order is a
//! shuffle drawn from the seed and the round, so the same seed makes the same choices.

use super::{Choosing, Strategy};
use crate::adaptive::criterion::Pick;
use crate::rng::Rng;

pub struct Random;

impl Strategy for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn help(&self) -> &'static str {
        "Uniformly at random among the affordable candidates (a baseline)"
    }

    fn choose(&self, round: &Choosing) -> Vec<Pick> {
        let mut order: Vec<usize> = (0..round.candidates.len()).collect();
        let mut rng = Rng::derive(round.settings.seed, &[0xAD4, round.round as u64]);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        round.first_affordable(order)
    }
}
