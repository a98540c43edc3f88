//! The two search strategies as one ask/tell engine: uniform random sampling, and a genetic
//! algorithm (population, tournament selection, uniform crossover, mutation, elitism). Every
//! random choice comes from one seeded splitmix64, so for a given seed the sequence of proposals
//! depends only on the fitness values told back (random mode: not even on those).

use super::params::{Params, Space};
use std::collections::{HashSet, VecDeque};
use xlstm_wgpu::rng::SplitMix64;

/// How candidates are chosen (`--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Random,
    Ga,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Random => "random",
            Mode::Ga => "ga",
        }
    }
}

/// Genetic-algorithm settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaConfig {
    /// Members per generation (generation 0 includes the default configuration).
    pub population: usize,
    /// The best members carried unchanged into the next generation (not re-measured).
    pub elite: usize,
    /// Contestants per tournament.
    pub tournament: usize,
    /// Probability that a child mixes two parents (else it copies one).
    pub crossover: f64,
    /// Probability that each gene of a child is replaced by a random value.
    pub mutation: f64,
}

impl GaConfig {
    /// Settings for a run of `trials` trials over `genes` knobs.
    pub fn for_trials(trials: usize, genes: usize, population: Option<usize>) -> GaConfig {
        let population = population
            .unwrap_or_else(|| ((trials as f64).sqrt() * 2.0).round() as usize)
            .clamp(2, 64);
        GaConfig {
            population,
            elite: (population / 4).max(1),
            tournament: if population >= 6 { 3 } else { 2 },
            crossover: 0.9,
            mutation: (1.0 / genes.max(1) as f64).max(0.15),
        }
    }
}

/// The engine: `ask` for the next configuration to measure, `tell` its fitness.
pub struct Search {
    mode: Mode,
    space: Space,
    base: Params,
    num_heads: usize,
    rng: SplitMix64,
    ga: GaConfig,
    /// Canonical configurations proposed so far (never proposed twice).
    seen: HashSet<Params>,
    /// Proposals of the current generation (or random batch) not yet asked for.
    queue: VecDeque<Params>,
    /// Measured members of the current generation.
    current: Vec<(Params, f64)>,
    /// Elites carried from earlier generations.
    elites: Vec<(Params, f64)>,
    generation: usize,
    exhausted: bool,
}

impl Search {
    /// `first`: measured first, in order (the default configuration, then e.g. cached settings).
    pub fn new(
        mode: Mode,
        space: Space,
        base: Params,
        num_heads: usize,
        seed: u64,
        ga: GaConfig,
        first: &[Params],
    ) -> Search {
        let mut s = Search {
            mode,
            space,
            base,
            num_heads,
            rng: SplitMix64::new(seed ^ 0x7475_6e65),
            ga,
            seen: HashSet::new(),
            queue: VecDeque::new(),
            current: Vec::new(),
            elites: Vec::new(),
            generation: 0,
            exhausted: false,
        };
        for p in first {
            let c = s.canon(*p);
            if s.seen.insert(c) {
                s.queue.push_back(c);
            }
        }
        let fill = match mode {
            Mode::Ga => s.ga.population.saturating_sub(s.queue.len()),
            Mode::Random => 0,
        };
        for _ in 0..fill {
            if let Some(p) = s.sample_unseen() {
                s.queue.push_back(p);
            }
        }
        s
    }

    /// `p` with every knob outside the space at its base value, canonicalised (so settings that
    /// run identically are one configuration).
    fn canon(&self, p: Params) -> Params {
        let mut q = self.base;
        for (k, _) in &self.space.dims {
            q.set(*k, p.get(*k));
        }
        q.canonical(&self.base, self.num_heads)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A uniform point of the space (knobs outside it keep the base values).
    pub fn sample(&mut self) -> Params {
        let mut p = self.base;
        for d in 0..self.space.dims.len() {
            let n = self.space.dims[d].1.len();
            let i = self.below(n);
            let (k, ref values) = self.space.dims[d];
            p.set(k, values[i]);
        }
        self.canon(p)
    }

    fn sample_unseen(&mut self) -> Option<Params> {
        for _ in 0..2000 {
            let p = self.sample();
            if self.seen.insert(p) {
                return Some(p);
            }
        }
        self.exhausted = true;
        None
    }

    /// The next configuration to measure, and its generation; `None` once the space is
    /// exhausted. Among the queued proposals the first for which `prefer` holds is taken (the
    /// caller prefers those that need no model reload).
    pub fn ask(&mut self, prefer: &dyn Fn(&Params) -> bool) -> Option<(Params, usize)> {
        if self.queue.is_empty() {
            self.refill();
        }
        let i = self.queue.iter().position(prefer).unwrap_or(0);
        self.queue.remove(i).map(|p| (p, self.generation))
    }

    /// The measured fitness of a configuration `ask` returned (`None`: it failed).
    pub fn tell(&mut self, p: Params, fitness: Option<f64>) {
        let f = fitness.filter(|f| f.is_finite()).unwrap_or(f64::NEG_INFINITY);
        self.current.push((p, f));
    }

    fn refill(&mut self) {
        if self.exhausted {
            return;
        }
        match self.mode {
            Mode::Random => {
                // Batches of a few samples, so `ask` can prefer ones that need no reload.
                for _ in 0..8 {
                    match self.sample_unseen() {
                        Some(p) => self.queue.push_back(p),
                        None => break,
                    }
                }
                self.current.clear();
            }
            Mode::Ga => self.next_generation(),
        }
    }

    fn next_generation(&mut self) {
        let mut pool: Vec<(Params, f64)> = self.elites.drain(..).chain(self.current.drain(..)).collect();
        // Best first; ties keep the earlier (stable sort), so the default wins ties.
        pool.sort_by(|a, b| b.1.total_cmp(&a.1));
        self.elites = pool.iter().take(self.ga.elite).cloned().collect();
        self.generation += 1;
        let children = self.ga.population.saturating_sub(self.elites.len()).max(1);
        for _ in 0..children {
            match self.child(&pool) {
                Some(c) => self.queue.push_back(c),
                None => break,
            }
        }
    }

    fn tournament(&mut self, pool: &[(Params, f64)]) -> Params {
        let mut best: Option<(Params, f64)> = None;
        for _ in 0..self.ga.tournament.max(1) {
            let c = pool[self.below(pool.len())];
            if best.is_none_or(|b| c.1 > b.1) {
                best = Some(c);
            }
        }
        best.map_or(self.base, |b| b.0)
    }

    fn mutate_one(&mut self, p: &mut Params) {
        if self.space.dims.is_empty() {
            return;
        }
        let d = self.below(self.space.dims.len());
        let n = self.space.dims[d].1.len();
        let i = self.below(n);
        let (k, ref values) = self.space.dims[d];
        p.set(k, values[i]);
    }

    /// A new, unseen configuration bred from the pool (or a random one if breeding keeps
    /// producing known ones).
    fn child(&mut self, pool: &[(Params, f64)]) -> Option<Params> {
        if pool.is_empty() {
            return self.sample_unseen();
        }
        for _ in 0..64 {
            let a = self.tournament(pool);
            let b = self.tournament(pool);
            let mut c = a;
            if self.chance(self.ga.crossover) {
                for d in 0..self.space.dims.len() {
                    let k = self.space.dims[d].0;
                    if self.chance(0.5) {
                        c.set(k, b.get(k));
                    }
                }
            }
            for d in 0..self.space.dims.len() {
                if self.chance(self.ga.mutation) {
                    let n = self.space.dims[d].1.len();
                    let i = self.below(n);
                    let (k, ref values) = self.space.dims[d];
                    c.set(k, values[i]);
                }
            }
            let mut c = self.canon(c);
            if self.seen.contains(&c) {
                self.mutate_one(&mut c);
                c = self.canon(c);
            }
            if self.seen.insert(c) {
                return Some(c);
            }
        }
        self.sample_unseen()
    }
}
