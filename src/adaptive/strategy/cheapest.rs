//! `cheapest`: the cheapest affordable candidates first (by what each costs alone; ties to the
//! lower index), a baseline.

use super::{Choosing, Strategy};
use crate::adaptive::criterion::Pick;

pub struct Cheapest;

impl Strategy for Cheapest {
    fn name(&self) -> &'static str {
        "cheapest"
    }

    fn help(&self) -> &'static str {
        "The cheapest affordable candidates first (a baseline)"
    }

    fn choose(&self, round: &Choosing) -> Vec<Pick> {
        let mut order: Vec<usize> = (0..round.candidates.len()).collect();
        order.sort_by(|&a, &b| round.cost_alone(a).total_cmp(&round.cost_alone(b)).then(a.cmp(&b)));
        round.first_affordable(order)
    }
}
