//! L-BFGS for every fit here: the data-model law (`law.rs`), the law with one floor per group
//! (`grouped.rs`) and the curve law (`curve/fit.rs`). Each gives its objective as a [`Smooth`]
//! function (value and gradient in one pass); this module runs argmin's L-BFGS with the
//! More–Thuente line search on it.
//!
//! argmin asks for the cost and the gradient at the same point separately, so the last
//! evaluation is kept. Its line search has no iteration limit of its own and on degenerate data
//! can search forever, so evaluations are counted and a run gives up past a bound, or at the
//! first non-finite parameter.

use std::cell::{Cell, RefCell};

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

/// An objective L-BFGS can minimise: its value and gradient at θ.
pub(crate) trait Smooth {
    fn value_and_gradient(&self, theta: &[f64]) -> (f64, Vec<f64>);
}

/// How one minimisation stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    pub tolerance_grad: f64,
    pub tolerance_cost: f64,
    pub max_iters: u64,
    /// Objective evaluations one run may take (line searches included).
    pub max_evaluations: u64,
}

/// One L-BFGS run from `start` (memory 10): (θ, objective, iterations) at the best point, when its
/// objective is finite.
pub(crate) fn minimise<O: Smooth>(objective: &O, start: Vec<f64>, stopping: Stopping) -> Option<(Vec<f64>, f64, u64)> {
    let problem = Counted { objective, last: RefCell::new(None), evaluations: Cell::new(0), max_evaluations: stopping.max_evaluations };
    let solver =
        LBFGS::new(MoreThuenteLineSearch::new(), 10).with_tolerance_grad(stopping.tolerance_grad).ok()?.with_tolerance_cost(stopping.tolerance_cost).ok()?;
    let result = Executor::new(problem, solver).configure(|s| s.param(start).max_iters(stopping.max_iters)).run().ok()?;
    let state = result.state();
    let theta = state.get_best_param()?.clone();
    let cost = state.get_best_cost();
    cost.is_finite().then_some((theta, cost, state.get_iter()))
}

/// One evaluation: (θ, value, gradient).
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// A [`Smooth`] objective as argmin sees it: the last evaluation kept, evaluations counted.
struct Counted<'a, O> {
    objective: &'a O,
    last: RefCell<Option<Evaluation>>,
    evaluations: Cell<u64>,
    max_evaluations: u64,
}

impl<O: Smooth> Counted<'_, O> {
    /// Every request counts, the kept one too.
    fn at(&self, theta: &[f64]) -> Result<(f64, Vec<f64>), argmin::core::Error> {
        let n = self.evaluations.get() + 1;
        self.evaluations.set(n);
        if n > self.max_evaluations || theta.iter().any(|x| !x.is_finite()) {
            return Err(argmin::core::Error::msg("gave up: too many evaluations or a non-finite parameter"));
        }
        if let Some((t, cost, grad)) = &*self.last.borrow() {
            if t.as_slice() == theta {
                return Ok((*cost, grad.clone()));
            }
        }
        let (cost, grad) = self.objective.value_and_gradient(theta);
        *self.last.borrow_mut() = Some((theta.to_vec(), cost, grad.clone()));
        Ok((cost, grad))
    }
}

impl<O: Smooth> CostFunction for Counted<'_, O> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.at(theta)?.0)
    }
}

impl<O: Smooth> Gradient for Counted<'_, O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.at(theta)?.1)
    }
}
