//! A synthetic language with an exactly known loss floor.
//!
//! # The generative process
//!
//! Tokens are `0..vocab`. A fixed random permutation ranks them; the *unigram* distribution is
//! Zipfian over that ranking, `q(x) ∝ rank(x)^(−zipf_exponent)`.
//!
//! For every order `k = 1..=max_order` there are up to `rules` *rules*. A context (the last `k`
//! tokens) selects one rule of its order — exactly when there are at most `rules` contexts of that
//! order, by a hash otherwise. Each rule is a peaked next-token distribution: `support` tokens
//! drawn from the Zipfian unigram, with probabilities `∝ peak_decay^j` (j = 0..support). Because
//! rule tokens are themselves Zipfian, contexts made of frequent tokens are frequent and contexts
//! are used with heavy-tailed (roughly Zipfian) frequencies.
//!
//! The next token is drawn from the mixture over orders
//!
//! ```text
//! p(x | history) = Σ_{k=0..K} w_k · P_k(x | last k tokens)
//! P_0 = q,   P_k(x | c) = (1 − ε) · Σ_j π_j [x = s_j(rule_k(c))] + ε · q(x)
//! ```
//!
//! with `w = order_weights` (renormalised over the orders the history is long enough for, at the
//! start of a sequence) and `ε = smoothing`. Learning order k means memorising its rules, and the
//! rules are used with Zipfian frequencies: small models and little data learn the low orders and
//! the frequent contexts, larger ones keep finding rarer ones — loss falls with both parameters and
//! tokens over orders of magnitude, roughly as a power law (Hutter 2021, "Learning curve theory").
//!
//! # The exact floor
//!
//! The probability above is the true conditional `p(x_t | x_<t)` of the process, so the *oracle
//! loss* `mean −log p(x_t | x_<t)` of any stream it generated is exact, not estimated. The
//! dependency length is `max_order` tokens, far inside any training sequence.
//!
//! Sequences are independent: sequence `i` of a split is a pure function of `(config, seed,
//! split, i)`, so any batch can be produced without producing those before it.

use serde::{Deserialize, Serialize};

use crate::rng::{splitmix64, Rng};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Number of distinct tokens.
    pub vocab: usize,
    /// Longest context a rule looks at (the dependency length).
    pub max_order: usize,
    /// Mixture weights of orders 0..=max_order (order 0 is the Zipfian unigram).
    pub order_weights: Vec<f64>,
    /// Rules per order (distinct next-token distributions).
    pub rules: usize,
    /// Exponent of the Zipfian unigram (0 = uniform).
    pub zipf_exponent: f64,
    /// Tokens each rule can emit.
    pub support: usize,
    /// Ratio between successive probabilities within a rule (smaller = more peaked).
    pub peak_decay: f64,
    /// Weight of the unigram inside each rule, so no token is impossible.
    pub smoothing: f64,
    /// Seed of the language itself (its permutation and rules); the data seed picks the streams.
    pub language_seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            vocab: 256,
            max_order: 3,
            order_weights: vec![0.1, 0.3, 0.3, 0.3],
            rules: 16_384,
            zipf_exponent: 1.1,
            support: 4,
            peak_decay: 0.5,
            smoothing: 0.05,
            language_seed: 0,
        }
    }
}

impl SyntheticConfig {
    /// Refuse settings that define no language, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.vocab < 2 {
            return Err(format!("`vocab` must be at least 2 (got {})", self.vocab));
        }
        // Bounds that keep the language's tables within a few hundred MB.
        if self.vocab > MAX_VOCAB {
            return Err(format!("`vocab` must be at most {MAX_VOCAB} (got {})", self.vocab));
        }
        if self.max_order > MAX_ORDER {
            return Err(format!("`max_order` must be at most {MAX_ORDER} (got {})", self.max_order));
        }
        if (self.rules as u128) * (self.support as u128) > MAX_RULE_TOKENS as u128 {
            return Err(format!(
                "`rules` × `support` = {} × {} is beyond {MAX_RULE_TOKENS} rule tokens per order; lower one of them",
                self.rules, self.support
            ));
        }
        if self.order_weights.len() != self.max_order + 1 {
            return Err(format!(
                "`order_weights` needs max_order + 1 = {} entries (orders 0..={}), got {}",
                self.max_order + 1,
                self.max_order,
                self.order_weights.len()
            ));
        }
        if self.order_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || self.order_weights[0] + self.order_weights.iter().skip(1).sum::<f64>() <= 0.0 {
            return Err("`order_weights` must be non-negative with a positive sum".into());
        }
        if self.order_weights[0] <= 0.0 && self.max_order > 0 {
            // Position 0 has no history: it needs order 0.
            return Err("`order_weights[0]` (the unigram) must be positive: the first token of a sequence has no context".into());
        }
        if self.rules == 0 {
            return Err("`rules` must be at least 1".into());
        }
        if self.support == 0 || self.support > self.vocab {
            return Err(format!("`support` must be between 1 and vocab = {} (got {})", self.vocab, self.support));
        }
        if !(self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0) {
            return Err(format!("`zipf_exponent` must be ≥ 0 (got {})", self.zipf_exponent));
        }
        if !(self.peak_decay > 0.0 && self.peak_decay <= 1.0) {
            return Err(format!("`peak_decay` must be in (0, 1] (got {})", self.peak_decay));
        }
        if !(0.0..=1.0).contains(&self.smoothing) {
            return Err(format!("`smoothing` must be in [0, 1] (got {})", self.smoothing));
        }
        Ok(())
    }
}

/// The largest vocabulary the synthetic language takes (2^20; real tokenizers stay below 2^18).
pub const MAX_VOCAB: usize = 1 << 20;
/// The longest context a rule may look at.
pub const MAX_ORDER: usize = 16;
/// The most rule tokens (rules × support) one order may hold (2^26 u32: 256 MiB).
pub const MAX_RULE_TOKENS: usize = 1 << 26;

/// One order's rules: `support` tokens per rule, flattened.
#[derive(Debug, Clone)]
struct OrderRules {
    /// Number of rules of this order (≤ config.rules).
    count: u64,
    /// True when every context has its own rule (vocab^k ≤ rules).
    exact: bool,
    tokens: Vec<u32>,
}

/// The language, built once from its config (a few MB of tables at most).
#[derive(Debug, Clone)]
pub struct SyntheticLanguage {
    config: SyntheticConfig,
    /// q(x) for every token.
    unigram: Vec<f64>,
    /// Cumulative q in rank order, for sampling.
    unigram_cdf: Vec<f64>,
    /// Token of each rank.
    token_of_rank: Vec<u32>,
    /// π_j, normalised.
    peak: Vec<f64>,
    /// Orders 1..=max_order.
    orders: Vec<OrderRules>,
}

impl SyntheticLanguage {
    pub fn new(config: SyntheticConfig) -> Result<Self, String> {
        config.validate()?;
        let v = config.vocab;
        let mut rng = Rng::derive(config.language_seed, &[0x5A17]);
        // A random ranking of the tokens (Fisher–Yates).
        let mut token_of_rank: Vec<u32> = (0..v as u32).collect();
        for i in (1..v).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            token_of_rank.swap(i, j);
        }
        let weights: Vec<f64> = (0..v).map(|r| ((r + 1) as f64).powf(-config.zipf_exponent)).collect();
        let total: f64 = weights.iter().sum();
        let mut unigram = vec![0.0; v];
        let mut unigram_cdf = Vec::with_capacity(v);
        let mut acc = 0.0;
        for (rank, w) in weights.iter().enumerate() {
            unigram[token_of_rank[rank] as usize] = w / total;
            acc += w / total;
            unigram_cdf.push(acc);
        }
        let peak_raw: Vec<f64> = (0..config.support).map(|j| config.peak_decay.powi(j as i32)).collect();
        let peak_total: f64 = peak_raw.iter().sum();
        let peak = peak_raw.iter().map(|p| p / peak_total).collect();

        let mut language = Self { config, unigram, unigram_cdf, token_of_rank, peak, orders: Vec::new() };
        for k in 1..=language.config.max_order {
            let contexts = (v as u128).checked_pow(k as u32).unwrap_or(u128::MAX);
            let exact = contexts <= language.config.rules as u128;
            let count = if exact { contexts as u64 } else { language.config.rules as u64 };
            let mut rule_rng = Rng::derive(language.config.language_seed, &[0x70E5, k as u64]);
            let tokens = (0..count as usize * language.config.support).map(|_| language.sample_unigram(&mut rule_rng)).collect();
            language.orders.push(OrderRules { count, exact, tokens });
        }
        Ok(language)
    }

    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    pub fn vocab(&self) -> usize {
        self.config.vocab
    }

    fn sample_unigram(&self, rng: &mut Rng) -> u32 {
        let u = rng.next_f64();
        let rank = self.unigram_cdf.partition_point(|&c| c <= u).min(self.config.vocab - 1);
        self.token_of_rank[rank]
    }

    /// Which rule of order `k` the context `context` (exactly k tokens, oldest first) uses.
    fn rule(&self, k: usize, context: &[u32]) -> usize {
        let rules = &self.orders[k - 1];
        if rules.exact {
            context.iter().fold(0u64, |acc, &t| acc * self.config.vocab as u64 + t as u64) as usize
        } else {
            let h = context.iter().fold(splitmix64(k as u64 ^ self.config.language_seed), |acc, &t| splitmix64(acc ^ t as u64));
            (h % rules.count) as usize
        }
    }

    fn rule_tokens(&self, k: usize, context: &[u32]) -> &[u32] {
        let s = self.config.support;
        let r = self.rule(k, context);
        &self.orders[k - 1].tokens[r * s..(r + 1) * s]
    }

    /// Mixture weights usable after `history_len` tokens, normalised.
    fn weights(&self, history_len: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let top = history_len.min(self.config.max_order);
        let total: f64 = self.config.order_weights[..=top].iter().sum();
        self.config.order_weights[..=top].iter().enumerate().map(move |(k, w)| (k, w / total))
    }

    /// The exact p(x | history); only the last `max_order` tokens of `history` matter.
    pub fn probability(&self, history: &[u32], x: u32) -> f64 {
        let eps = self.config.smoothing;
        let q = self.unigram[x as usize];
        self.weights(history.len())
            .map(|(k, w)| {
                if w == 0.0 {
                    return 0.0;
                }
                if k == 0 {
                    return w * q;
                }
                let context = &history[history.len() - k..];
                let peaked: f64 = self.rule_tokens(k, context).iter().zip(&self.peak).filter(|(&t, _)| t == x).map(|(_, p)| p).sum();
                w * ((1.0 - eps) * peaked + eps * q)
            })
            .sum()
    }

    /// Draw the next token after `history`.
    pub fn sample_next(&self, history: &[u32], rng: &mut Rng) -> u32 {
        // Pick the order, then sample from that order's distribution.
        let mut u = rng.next_f64();
        let mut order = 0;
        for (k, w) in self.weights(history.len()) {
            order = k;
            if u < w {
                break;
            }
            u -= w;
        }
        if order == 0 || rng.next_f64() < self.config.smoothing {
            return self.sample_unigram(rng);
        }
        let context = &history[history.len() - order..];
        let mut u = rng.next_f64();
        let tokens = self.rule_tokens(order, context);
        for (t, p) in tokens.iter().zip(&self.peak) {
            if u < *p {
                return *t;
            }
            u -= p;
        }
        *tokens.last().unwrap()
    }

    /// Generate one independent sequence of `len` tokens into `out` (cleared first).
    pub fn generate(&self, rng: &mut Rng, len: usize, out: &mut Vec<u32>) {
        out.clear();
        for _ in 0..len {
            let next = self.sample_next(out, rng);
            out.push(next);
        }
    }

    /// −log p(x_t | x_<t) in nats for t in `from..` of one sequence.
    pub fn nll(&self, sequence: &[u32], from: usize) -> Vec<f64> {
        (from..sequence.len()).map(|t| -self.probability(&sequence[..t], sequence[t]).ln()).collect()
    }

    /// The unigram q (its entropy is the loss of a model that ignores context).
    pub fn unigram(&self) -> &[f64] {
        &self.unigram
    }

    /// p(· | history) for every token into `out` (only the last `max_order` tokens matter).
    fn next_distribution(&self, history: &[u32], out: &mut [f64]) {
        let eps = self.config.smoothing;
        out.fill(0.0);
        for (k, w) in self.weights(history.len()).filter(|(_, w)| *w > 0.0) {
            let unigram_share = if k == 0 { w } else { w * eps };
            out.iter_mut().zip(&self.unigram).for_each(|(o, q)| *o += unigram_share * q);
            if k > 0 {
                let context = &history[history.len() - k..];
                for (&t, p) in self.rule_tokens(k, context).iter().zip(&self.peak) {
                    out[t as usize] += w * (1.0 - eps) * p;
                }
            }
        }
    }

    /// The exact floor of a model trained on the language: the expected loss (nats/token) at
    /// positions 1..=seq_len of a sequence, `E[−log p(x_t | x_<t)]` computed over the distribution
    /// of every context rather than sampled (what the `oracle_loss` of a held-out split estimates),
    /// and the entropy rate, its limit deep into a sequence. None when the language has more than
    /// [`MAX_EXACT_CONTEXTS`] contexts of its longest order (vocab^max_order).
    pub fn floor(&self, seq_len: usize) -> Option<LanguageFloor> {
        let (v, order) = (self.config.vocab, self.config.max_order);
        let contexts = v.checked_pow(order as u32).filter(|&c| c <= MAX_EXACT_CONTEXTS)?;
        let mut walk = ContextWalk { language: self, dist: vec![1.0], len: 0, next: vec![0.0; v], history: vec![0; order], contexts };
        let mut total = 0.0;
        let mut previous = walk.step();
        for _ in 1..=seq_len {
            previous = walk.step();
            total += previous;
        }
        // Deep into the sequence, the per-token entropy settles at the rate.
        let mut rate = previous;
        for _ in 0..100_000 {
            let h = walk.step();
            let settled = (h - rate).abs() < 1e-13;
            rate = h;
            if settled {
                break;
            }
        }
        Some(LanguageFloor { seq_len, expected_loss: total / seq_len.max(1) as f64, entropy_rate: rate })
    }
}

/// The most contexts of the longest order (vocab^max_order) for which
/// [`SyntheticLanguage::floor`] is computed exactly (a few hundred ms at most).
pub const MAX_EXACT_CONTEXTS: usize = 1 << 12;

/// A language's exact floor: see [`SyntheticLanguage::floor`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LanguageFloor {
    pub seq_len: usize,
    /// Mean expected −log p over positions 1..=seq_len, nats/token.
    pub expected_loss: f64,
    /// The entropy per token deep into a sequence, nats/token.
    pub entropy_rate: f64,
}

/// The distribution of the last min(t, max_order) tokens at position t, walked forward one
/// position at a time (contexts encoded base vocab, oldest first).
struct ContextWalk<'a> {
    language: &'a SyntheticLanguage,
    dist: Vec<f64>,
    len: usize,
    next: Vec<f64>,
    history: Vec<u32>,
    contexts: usize,
}

impl ContextWalk<'_> {
    /// The expected entropy of the token at the current position; then move one position on.
    fn step(&mut self) -> f64 {
        let v = self.next.len();
        let order = self.history.len();
        let new_len = (self.len + 1).min(order);
        let mut new_dist = vec![0.0; v.pow(new_len as u32)];
        let mut entropy = 0.0;
        for (state, &p) in self.dist.iter().enumerate().filter(|(_, p)| **p > 0.0) {
            let mut code = state;
            for slot in self.history[..self.len].iter_mut().rev() {
                *slot = (code % v) as u32;
                code /= v;
            }
            self.language.next_distribution(&self.history[..self.len], &mut self.next);
            entropy += p * self.next.iter().filter(|&&q| q > 0.0).map(|q| -q * q.ln()).sum::<f64>();
            if order == 0 {
                continue;
            }
            // Drop the oldest token once the context is full, then append the new one.
            let kept = if self.len == order { state % (self.contexts / v) } else { state };
            for (x, &q) in self.next.iter().enumerate() {
                new_dist[kept * v + x] += p * q;
            }
        }
        if order > 0 {
            self.dist = new_dist;
            self.len = new_len;
        }
        entropy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    fn stream(lang: &SyntheticLanguage, seed: u64, sequences: usize, len: usize) -> Vec<Vec<u32>> {
        let mut rng = Rng::new(seed);
        (0..sequences)
            .map(|_| {
                let mut s = Vec::new();
                lang.generate(&mut rng, len, &mut s);
                s
            })
            .collect()
    }

    #[test]
    fn probabilities_sum_to_one_for_every_history() {
        let lang = SyntheticLanguage::new(SyntheticConfig { vocab: 37, rules: 100, ..Default::default() }).unwrap();
        for history in [vec![], vec![3], vec![3, 36], vec![1, 2, 3, 4, 5]] {
            let total: f64 = (0..37).map(|x| lang.probability(&history, x)).sum();
            assert!((total - 1.0).abs() < 1e-12, "history {history:?}: {total}");
        }
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let lang = SyntheticLanguage::new(SyntheticConfig::default()).unwrap();
        assert_eq!(stream(&lang, 1, 3, 50), stream(&lang, 1, 3, 50));
        assert_ne!(stream(&lang, 1, 3, 50), stream(&lang, 2, 3, 50));
        let other = SyntheticLanguage::new(SyntheticConfig { language_seed: 9, ..Default::default() }).unwrap();
        assert_ne!(stream(&lang, 1, 3, 50), stream(&other, 1, 3, 50));
    }

    #[test]
    fn uniform_source_has_oracle_log_v() {
        let config = SyntheticConfig { vocab: 50, max_order: 0, order_weights: vec![1.0], zipf_exponent: 0.0, ..Default::default() };
        let lang = SyntheticLanguage::new(config).unwrap();
        for s in stream(&lang, 3, 4, 100) {
            for nll in lang.nll(&s, 0) {
                assert!((nll - 50f64.ln()).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn deterministic_source_has_oracle_zero() {
        // Order 1 only, one support token, no smoothing: each token fixes the next.
        let config = SyntheticConfig { vocab: 20, max_order: 1, order_weights: vec![1e-300, 1.0], support: 1, smoothing: 0.0, ..Default::default() };
        let lang = SyntheticLanguage::new(config).unwrap();
        for s in stream(&lang, 4, 5, 200) {
            assert!(lang.nll(&s, 1).iter().all(|&x| x.abs() < 1e-12));
        }
    }

    #[test]
    fn first_order_chain_matches_its_analytic_entropy_rate() {
        let v = 12;
        let config = SyntheticConfig { vocab: v, max_order: 1, order_weights: vec![0.2, 0.8], support: 3, smoothing: 0.1, ..Default::default() };
        let lang = SyntheticLanguage::new(config).unwrap();
        // Transition matrix T[i][j] = p(j | i); stationary π by power iteration.
        let t: Vec<Vec<f64>> = (0..v as u32).map(|i| (0..v as u32).map(|j| lang.probability(&[i], j)).collect()).collect();
        let mut pi = vec![1.0 / v as f64; v];
        for _ in 0..2000 {
            let mut next = vec![0.0; v];
            for i in 0..v {
                for j in 0..v {
                    next[j] += pi[i] * t[i][j];
                }
            }
            pi = next;
        }
        let rate: f64 = (0..v).map(|i| pi[i] * t[i].iter().map(|p| -p * p.ln()).sum::<f64>()).sum();
        let s = stream(&lang, 5, 1, 400_000).remove(0);
        let measured = mean(&lang.nll(&s, 1));
        assert!((measured - rate).abs() < 0.01 * rate, "measured {measured}, analytic {rate}");
    }

    /// An interpolated count-based n-gram model (order 0..=3, add-one at order 0).
    struct NGram {
        vocab: usize,
        counts: Vec<std::collections::HashMap<Vec<u32>, Vec<u32>>>,
    }

    impl NGram {
        fn fit(vocab: usize, data: &[Vec<u32>]) -> Self {
            let mut counts = vec![std::collections::HashMap::new(); 4];
            for s in data {
                for t in 0..s.len() {
                    for k in 0..=3.min(t) {
                        let entry = counts[k].entry(s[t - k..t].to_vec()).or_insert_with(|| vec![0u32; vocab]);
                        entry[s[t] as usize] += 1;
                    }
                }
            }
            Self { vocab, counts }
        }

        fn prob(&self, history: &[u32], x: u32) -> f64 {
            // Witten–Bell-style backoff through orders 0..=3.
            let unigram = &self.counts[0][&Vec::new()];
            let total: f64 = unigram.iter().map(|&c| c as f64).sum();
            let mut p = (unigram[x as usize] as f64 + 1.0) / (total + self.vocab as f64);
            for k in 1..=3.min(history.len()) {
                if let Some(c) = self.counts[k].get(&history[history.len() - k..]) {
                    let n: f64 = c.iter().map(|&c| c as f64).sum();
                    let types = c.iter().filter(|&&c| c > 0).count() as f64;
                    let lambda = n / (n + types);
                    p = lambda * c[x as usize] as f64 / n + (1.0 - lambda) * p;
                }
            }
            p
        }
    }

    #[test]
    fn an_ngram_estimator_improves_with_data_but_never_beats_the_oracle() {
        let lang = SyntheticLanguage::new(SyntheticConfig { vocab: 64, rules: 4096, ..Default::default() }).unwrap();
        let eval = stream(&lang, 100, 200, 64);
        let oracle = mean(&eval.iter().flat_map(|s| lang.nll(s, 1)).collect::<Vec<_>>());
        let mut previous = f64::INFINITY;
        for sequences in [30, 300, 3000] {
            let train = stream(&lang, 7, sequences, 64);
            let model = NGram::fit(64, &train);
            let loss = mean(&eval.iter().flat_map(|s| (1..s.len()).map(|t| -model.prob(&s[..t], s[t]).ln()).collect::<Vec<_>>()).collect::<Vec<_>>());
            assert!(loss < previous, "{sequences} sequences: {loss} ≥ {previous}");
            assert!(loss > oracle, "{sequences} sequences: n-gram {loss} below the oracle {oracle}");
            previous = loss;
        }
        // The unigram entropy is well above the oracle: context carries real information.
        let h_unigram: f64 = lang.unigram().iter().map(|p| -p * p.ln()).sum();
        assert!(h_unigram > oracle + 0.5, "unigram entropy {h_unigram}, oracle {oracle}");
    }

    #[test]
    fn the_exact_floor_matches_the_sampled_oracle_and_the_analytic_rate() {
        // Order 2 over 12 tokens: 144 contexts, every one with its own rule.
        let config = SyntheticConfig { vocab: 12, max_order: 2, order_weights: vec![0.2, 0.3, 0.5], rules: 144, support: 3, ..Default::default() };
        let lang = SyntheticLanguage::new(config).unwrap();
        let floor = lang.floor(32).unwrap();
        let sampled: Vec<f64> = stream(&lang, 9, 20_000, 33).iter().flat_map(|s| lang.nll(s, 1)).collect();
        let measured = mean(&sampled);
        assert!((measured - floor.expected_loss).abs() < 0.005, "sampled {measured}, exact {}", floor.expected_loss);
        // The rate: the first-order chain's analytic rate, as in the test above.
        let v = 12;
        let first = SyntheticConfig { vocab: v, max_order: 1, order_weights: vec![0.2, 0.8], support: 3, smoothing: 0.1, ..Default::default() };
        let lang = SyntheticLanguage::new(first).unwrap();
        let t: Vec<Vec<f64>> = (0..v as u32).map(|i| (0..v as u32).map(|j| lang.probability(&[i], j)).collect()).collect();
        let mut pi = vec![1.0 / v as f64; v];
        for _ in 0..2000 {
            pi = (0..v).map(|j| (0..v).map(|i| pi[i] * t[i][j]).sum()).collect();
        }
        let rate: f64 = (0..v).map(|i| pi[i] * t[i].iter().map(|p| -p * p.ln()).sum::<f64>()).sum();
        assert!((lang.floor(16).unwrap().entropy_rate - rate).abs() < 1e-9, "{:?} vs {rate}", lang.floor(16));
        // A unigram language: every position has the unigram's entropy.
        let unigram = SyntheticLanguage::new(SyntheticConfig { vocab: 50, max_order: 0, order_weights: vec![1.0], ..Default::default() }).unwrap();
        let h: f64 = unigram.unigram().iter().map(|p| -p * p.ln()).sum();
        let f = unigram.floor(8).unwrap();
        assert!((f.expected_loss - h).abs() < 1e-12 && (f.entropy_rate - h).abs() < 1e-12, "{f:?} vs {h}");
        // Too many contexts to walk exactly.
        assert_eq!(SyntheticLanguage::new(SyntheticConfig::default()).unwrap().floor(8), None);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let bad = |c: SyntheticConfig| SyntheticLanguage::new(c).unwrap_err();
        assert!(bad(SyntheticConfig { vocab: 0, ..Default::default() }).contains("`vocab`"));
        assert!(bad(SyntheticConfig { order_weights: vec![1.0], ..Default::default() }).contains("`order_weights`"));
        assert!(bad(SyntheticConfig { support: 0, ..Default::default() }).contains("`support`"));
        assert!(bad(SyntheticConfig { rules: 0, ..Default::default() }).contains("`rules`"));
    }
}
