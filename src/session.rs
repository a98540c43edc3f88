//! Sessions: one recurrent state plus the plans that advance it. `prefill` runs a prompt
//! (chunkwise by default), `step` feeds one token, `generate` does both with a sampler. The whole
//! history of a sequence lives in the fixed-size state, so a session can be saved and restored.

use crate::error::{Error, Result};
use crate::gpu::readback::{read_f32, read_u32};
use crate::gpu::{Plan, PlanBuilder, Profile, Slice, SubmitBudget};
use crate::model::forward::{State, Workspace};
use crate::model::schedule::{PrefillSchedule, PrefillStrategy};
use crate::model::Model;
use crate::sample::{Sampler, SamplerConfig};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Session settings: the scheduler's knobs.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub schedule: PrefillSchedule,
    pub submit: SubmitBudget,
    /// Longest prompt piece run as one forward pass; longer prompts are split and the state
    /// carried across (bounds activation memory).
    pub max_segment_tokens: usize,
    /// Greedy decode steps encoded into one submission (the chosen ids stay on the GPU).
    pub decode_batch: usize,
    /// CPU threads recording command buffers for the `queued` prefill strategy (0 = one per
    /// core, at most 8).
    pub record_threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            schedule: PrefillSchedule::default(),
            submit: SubmitBudget::default(),
            max_segment_tokens: 1024,
            decode_batch: 8,
            record_threads: 0,
        }
    }
}

/// Which logits `prefill` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    /// Only the last position's row ([V]).
    Last,
    /// Every position ([T, V], row-major).
    All,
}

/// A copy of the recurrent state, for saving and restoring (state passing).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedState {
    /// Tokens consumed so far.
    pub position: usize,
    /// Every state tensor, block by block: xLSTM Large C [NH, dqk, dv], n [NH, dqk], m [NH];
    /// original-xLSTM mLSTM blocks the conv window [KS, I] then C, n, m; sLSTM blocks the conv
    /// window [KS, E] (when the block has a conv) then (y, c, n, m) [4, E].
    pub tensors: Vec<Vec<f32>>,
}

/// What `generate` did, with timings.
#[derive(Clone, Debug, Default)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated: Vec<u32>,
    pub prefill_time: Duration,
    pub decode_time: Duration,
    pub peak_pool_bytes: u64,
    /// Whether a stop token ended the generation.
    pub stopped: bool,
}

impl GenerateStats {
    pub fn prefill_tok_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }
    pub fn decode_tok_per_s(&self) -> f64 {
        // The first generated token comes from the prefill's logits.
        self.generated.len().saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

struct Decode {
    ws: Workspace,
    /// The draw counter of GPU sampling (u32[1]).
    counter: crate::gpu::GpuBuffer,
    plans: HashMap<DecodeKey, Plan>,
}

/// A decode plan: steps per submission, the n/m parity it starts at, and how tokens are chosen
/// (None: greedy; otherwise the sampler's temperature and top-p bits, top-k and seed).
type DecodeKey = (usize, u32, Option<(u32, usize, u32, u64)>);

fn sampler_key(cfg: &SamplerConfig) -> Option<(u32, usize, u32, u64)> {
    (!cfg.is_greedy()).then(|| (cfg.temperature.to_bits(), cfg.top_k, cfg.top_p.to_bits(), cfg.seed))
}

/// The largest greedy batch per submission.
pub const MAX_DECODE_BATCH: usize = 64;

// --- stop hook (memory watchdog / xltop `stop`; see src/telemetry) ---
/// A check run at every safe point: before each prefill segment and before each decode step or
/// greedy batch. Returning an error stops the work there (the state stays consistent).
pub type StopHook = std::sync::Arc<dyn Fn() -> Result<()> + Send + Sync>;

static GLOBAL_STOP_HOOK: std::sync::RwLock<Option<StopHook>> = std::sync::RwLock::new(None);

/// Installs (or with `None` removes) a hook checked by every session of the process, in addition
/// to each session's own; returns the previous one. The telemetry watchdog installs its own here.
pub fn set_global_stop_hook(hook: Option<StopHook>) -> Option<StopHook> {
    let mut g = GLOBAL_STOP_HOOK.write().unwrap_or_else(|p| p.into_inner());
    std::mem::replace(&mut *g, hook)
}

fn global_stop_hook() -> Option<StopHook> {
    GLOBAL_STOP_HOOK.read().unwrap_or_else(|p| p.into_inner()).clone()
}
// --- end stop hook ---

/// One sequence's state on the GPU.
pub struct Session {
    // Plans reference the buffers below; they are declared first so they are dropped first.
    decode: Option<Decode>,
    state: State,
    parity: u32,
    position: usize,
    /// Ids at or above this are padded vocabulary rows the tokenizer cannot decode; greedy
    /// decoding and sampling never pick them.
    vocab_limit: usize,
    opts: SessionOptions,
    model: Model,
    /// Checked at safe points (see [`StopHook`]).
    stop: Option<StopHook>,
}

/// The error for non-finite logits at token `position` of the sequence.
fn non_finite_error(position: usize) -> Error {
    Error::Numeric(format!(
        "the model produced non-finite logits (NaN or Inf) at token position {position}: its weights or activations overflow"
    ))
}

/// Checks logits read back to the host, rows of `vocab` for positions `first_position`, ….
fn check_logits(logits: &[f32], vocab: usize, first_position: usize) -> Result<()> {
    match logits.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(non_finite_error(first_position + at / vocab.max(1))),
        None => Ok(()),
    }
}

impl Session {
    /// A new session with zero state.
    pub fn new(model: &Model, opts: SessionOptions) -> Result<Self> {
        if opts.schedule.chunk_size == 0 || opts.schedule.chunk_size > crate::ops::MAX_CHUNK {
            return Err(Error::Input(format!(
                "chunk size must be between 1 and {}, got {}",
                crate::ops::MAX_CHUNK,
                opts.schedule.chunk_size
            )));
        }
        if opts.max_segment_tokens == 0 || opts.decode_batch == 0 || opts.decode_batch > MAX_DECODE_BATCH {
            return Err(Error::Input(format!(
                "segment length must be positive and decode batch between 1 and {MAX_DECODE_BATCH}"
            )));
        }
        let state = model.inner.new_state()?;
        let vocab = model.vocab_size();
        let mut s = Session {
            decode: None,
            state,
            parity: 0,
            position: 0,
            vocab_limit: model.tokenizer().map_or(vocab, |t| t.vocab_size().clamp(1, vocab)),
            opts,
            model: model.clone(),
            stop: None,
        };
        s.reset()?;
        Ok(s)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }
    /// Tokens consumed since the last reset.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Sets this session's stop hook, checked before each prefill segment and decode step/batch.
    pub fn set_stop_hook(&mut self, hook: Option<StopHook>) {
        self.stop = hook;
    }

    /// Runs the session's and the process's stop hooks (a safe point).
    fn check_stop(&self) -> Result<()> {
        if let Some(h) = &self.stop {
            h()?;
        }
        if let Some(h) = global_stop_hook() {
            h()?;
        }
        Ok(())
    }

    /// Zeroes the state (m = 0, as mlstm_kernels' inference mode starts).
    pub fn reset(&mut self) -> Result<()> {
        let gpu = self.model.gpu();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for b in self.state.buffers() {
            enc.clear_buffer(b.raw(), 0, None);
        }
        gpu.queue.submit([enc.finish()]);
        self.parity = 0;
        self.position = 0;
        Ok(())
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::Input("the prompt is empty".into()));
        }
        let v = self.model.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
            return Err(Error::Input(format!(
                "token id {bad} is out of range for a vocabulary of {v}"
            )));
        }
        Ok(())
    }

    /// The longest segment whose activations fit the adapter's binding limit.
    fn segment_len(&self) -> usize {
        let m = &self.model.inner;
        let cap = m.gpu.caps.max_binding() as usize;
        let fits = m.segment_limit(cap, self.opts.schedule.chunk_size);
        let longest = self.opts.max_segment_tokens.min(fits).min(65535);
        longest.max(1)
    }

    /// Runs the prompt through the model, advancing the state; returns the requested logits.
    pub fn prefill(&mut self, ids: &[u32], want: Logits) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        let m = self.model.inner.clone();
        let (pool, gpu) = (&m.pool, &m.gpu);
        let vocab = self.model.vocab_size();
        let seg = self.segment_len();
        let mut out = Vec::new();
        let mut start = 0;
        while start < ids.len() {
            self.check_stop()?;
            let end = (start + seg).min(ids.len());
            let n = end - start;
            let rows = match want {
                Logits::All => n,
                Logits::Last if end == ids.len() => 1,
                _ => 0,
            };
            let (ws, plan, parity) = self.segment_plan(&ids[start..end], rows)?;
            if self.opts.schedule.strategy == PrefillStrategy::Queued {
                plan.run_queued(gpu, self.opts.submit, self.opts.record_threads)?;
            } else {
                plan.run(gpu, self.opts.submit)?;
            }
            let logits = if rows > 0 {
                read_f32(gpu, pool, ws.logits(), 0, (rows * vocab) as u64)?
            } else {
                Vec::new()
            };
            self.parity = parity;
            self.position += n;
            // The rows are the segment's last `rows` positions.
            check_logits(&logits, vocab, self.position - rows)?;
            out.extend(logits);
            start = end;
        }
        Ok(out)
    }

    /// The plan of one forward pass over `ids` (one segment) producing the last `rows` rows of
    /// logits, with its workspace (ids already uploaded) and the n/m parity after it.
    fn segment_plan(&self, ids: &[u32], rows: usize) -> Result<(Workspace, Plan, u32)> {
        let m = &self.model.inner;
        let n = ids.len();
        let ws = m.workspace(n, self.opts.schedule.chunk_size, rows, n)?;
        m.gpu.queue.write_buffer(ws.ids().raw(), 0, bytemuck::cast_slice(ids));
        let mut pb = PlanBuilder::new(m.gpu.clone());
        // A one-token segment is a decode step (the same kernels `step` runs).
        let parity = match n {
            1 => m.record_decode_step(&mut pb, &self.state, &ws, 0, self.parity)?,
            _ => m.record_prefill(&mut pb, &self.state, &ws, self.parity, &self.opts.schedule)?,
        };
        Ok((ws, pb.finish(&m.pool)?, parity))
    }

    /// Time per kernel of one forward pass over the first segment of `ids` (prefill runs long
    /// prompts a segment at a time: `SessionOptions::max_segment_tokens`), measured with
    /// timestamp queries where the adapter has them (`gpu::ProfileClock`). Returns how many
    /// tokens the pass covered and the profile; the state advances over those tokens as in
    /// `prefill`, except where the adapter's timestamps read zero: the pass then runs a second
    /// time, timed by submissions, and the session is reset afterwards (its state would have
    /// advanced twice).
    pub fn profile_prefill(&mut self, ids: &[u32]) -> Result<(usize, Profile)> {
        self.check_ids(ids)?;
        let m = self.model.inner.clone();
        let (pool, gpu) = (&m.pool, &m.gpu);
        let n = ids.len().min(self.segment_len());
        let (_ws, plan, parity) = self.segment_plan(&ids[..n], 1)?;
        let mut reran = false;
        let profile = plan.run_profiled(gpu, pool, &mut || {
            reran = true;
            Ok(())
        })?;
        self.parity = parity;
        self.position += n;
        if reran {
            self.reset()?;
        }
        Ok((n, profile))
    }

    /// Time per kernel of `steps` greedy decode steps starting from token `first` (as
    /// [`Session::profile_prefill`]: reset afterwards where the timestamps read zero).
    pub fn profile_decode(&mut self, first: u32, steps: usize) -> Result<Profile> {
        self.check_ids(&[first])?;
        let key = self.decode_plan(steps, None)?;
        let m = self.model.inner.clone();
        let decode = self.decode_input(first)?;
        let mut reran = false;
        let profile = decode.plans[&key].run_profiled(&m.gpu, &m.pool, &mut || {
            reran = true;
            Ok(())
        })?;
        self.parity ^= (steps % 2) as u32;
        self.position += steps;
        if reran {
            self.reset()?;
        }
        Ok(profile)
    }

    /// The decode workspace, with `id` written as the first step's input token.
    fn decode_input(&self, id: u32) -> Result<&Decode> {
        let decode = self
            .decode
            .as_ref()
            .ok_or_else(|| Error::Gpu("decode workspace missing".into()))?;
        let gpu = self.model.gpu();
        gpu.queue
            .write_buffer(decode.ws.ids().raw(), 0, bytemuck::bytes_of(&id));
        Ok(decode)
    }

    fn decode_plan(&mut self, steps: usize, sampler: Option<&SamplerConfig>) -> Result<DecodeKey> {
        let m = self.model.inner.clone();
        if self.decode.is_none() {
            let ws = m.workspace(1, 1, 1, MAX_DECODE_BATCH + 1)?;
            let counter = m.pool.storage(4, crate::gpu::Category::Scratch, "sample counter")?;
            m.gpu.queue.write_buffer(counter.raw(), 0, &[0u8; 4]);
            self.decode = Some(Decode {
                ws,
                counter,
                plans: HashMap::new(),
            });
        }
        let key = (steps, self.parity, sampler.and_then(sampler_key));
        let Some(decode) = self.decode.as_mut() else {
            return Err(Error::Gpu("decode workspace missing".into()));
        };
        if !decode.plans.contains_key(&key) {
            let mut pb = PlanBuilder::new(m.gpu.clone());
            let mut parity = self.parity;
            let (logits, ids) = (Slice::all(decode.ws.logits()), Slice::all(decode.ws.ids()));
            let vocab = self.model.vocab_size();
            for i in 0..steps {
                parity = m.record_decode_step(&mut pb, &self.state, &decode.ws, i, parity)?;
                // The chosen id becomes the next step's input: only ids come back to the CPU.
                match sampler.filter(|c| !c.is_greedy()) {
                    Some(cfg) => {
                        let counter = Slice::all(&decode.counter);
                        crate::ops::sample(
                            &mut pb,
                            &m.ops,
                            &logits,
                            0..self.vocab_limit,
                            cfg,
                            &counter,
                            &crate::ops::TokenOut {
                                buf: &ids,
                                first: i + 1,
                                second: None,
                            },
                        )?
                    }
                    None => crate::ops::argmax_prefix(
                        &mut pb,
                        &m.ops,
                        &logits,
                        1,
                        vocab,
                        self.vocab_limit,
                        &crate::ops::TokenOut {
                            buf: &ids,
                            first: i + 1,
                            second: None,
                        },
                    )?,
                }
            }
            decode.plans.insert(key, pb.finish(&m.pool)?);
        }
        Ok(key)
    }

    /// Builds the decode plan `generate` uses with `cfg` (compiling its kernels) without running
    /// it, so a front end can compile everything before it starts streaming text.
    pub fn prepare_decode(&mut self, cfg: &SamplerConfig) -> Result<()> {
        cfg.validate()?;
        self.decode_plan(self.opts.decode_batch, Some(cfg)).map(|_| ())
    }

    /// Feeds one token; returns the logits for the next position ([V]).
    pub fn step(&mut self, id: u32) -> Result<Vec<f32>> {
        self.check_ids(&[id])?;
        self.check_stop()?;
        let key = self.decode_plan(1, None)?;
        let m = self.model.inner.clone();
        let decode = self.decode_input(id)?;
        decode.plans[&key].run(&m.gpu, self.opts.submit)?;
        let logits = read_f32(&m.gpu, &m.pool, decode.ws.logits(), 0, self.model.vocab_size() as u64)?;
        self.parity ^= 1;
        self.position += 1;
        check_logits(&logits, self.model.vocab_size(), self.position - 1)?;
        Ok(logits)
    }

    /// Feeds `first`, then greedily feeds each chosen token back, `steps` times, in one
    /// submission; only the chosen ids are read back. Returns the `steps` ids chosen.
    pub fn step_greedy(&mut self, first: u32, steps: usize) -> Result<Vec<u32>> {
        self.step_batch(first, steps, None)
    }

    /// Like [`step_greedy`](Self::step_greedy), with each token drawn on the GPU by `cfg`
    /// (temperature, top-k, top-p, seed); the ids stay on the GPU between steps.
    pub fn step_sampled(&mut self, first: u32, steps: usize, cfg: &SamplerConfig) -> Result<Vec<u32>> {
        cfg.validate()?;
        self.step_batch(first, steps, Some(cfg))
    }

    fn step_batch(&mut self, first: u32, steps: usize, sampler: Option<&SamplerConfig>) -> Result<Vec<u32>> {
        self.check_ids(&[first])?;
        self.check_stop()?;
        if steps == 0 || steps > MAX_DECODE_BATCH {
            return Err(Error::Input(format!("decode batch must be 1..={MAX_DECODE_BATCH}")));
        }
        let key = self.decode_plan(steps, sampler)?;
        let m = self.model.inner.clone();
        let decode = self.decode_input(first)?;
        decode.plans[&key].run(&m.gpu, self.opts.submit)?;
        let ids = read_u32(&m.gpu, &m.pool, decode.ws.ids(), 1, steps as u64)?;
        let start = self.position;
        self.parity ^= (steps % 2) as u32;
        self.position += steps;
        // The kernels mark a step whose logits held a NaN or an infinity; the ids are read back
        // anyway, so the check costs nothing.
        if let Some(step) = ids.iter().position(|&id| id == crate::ops::NON_FINITE_ID) {
            return Err(non_finite_error(start + step));
        }
        Ok(ids)
    }

    /// Prefills `prompt`, then generates up to `max_new` tokens, calling `on_token` with each
    /// (return false to stop). Generation also stops after a token in `stop`. The first token
    /// is drawn on the CPU from the prompt's logits; after that, decoding runs `decode_batch` steps
    /// per submission with the tokens chosen on the GPU (argmax, or the sampler's temperature,
    /// top-k, top-p and seed); a stop inside a batch still ends the output
    /// there, but the state has then consumed the rest of that batch.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        stop: &[u32],
        on_token: &mut dyn FnMut(u32) -> Result<bool>,
    ) -> Result<GenerateStats> {
        let vocab_limit = self.vocab_limit;
        let mut stats = GenerateStats {
            prompt_tokens: prompt.len(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let logits = self.prefill(prompt, Logits::Last)?;
        stats.prefill_time = t0.elapsed();
        if max_new == 0 {
            stats.peak_pool_bytes = self.model.pool_stats().peak;
            return Ok(stats);
        }
        let t1 = Instant::now();
        let mut next = sampler.sample(&logits, vocab_limit);
        'outer: loop {
            stats.generated.push(next);
            let keep_going = on_token(next)?;
            if stop.contains(&next) {
                stats.stopped = true;
                break;
            }
            if !keep_going || stats.generated.len() >= max_new {
                break;
            }
            let remaining = max_new - stats.generated.len();
            // Several steps per submission; the chosen ids stay on the GPU (argmax or GPU sampling).
            let n = remaining.min(self.opts.decode_batch);
            let cfg = sampler.config().clone();
            let ids = self.step_batch(next, n, Some(&cfg))?;
            let (last, rest) = ids
                .split_last()
                .ok_or_else(|| Error::Gpu("empty decode batch".into()))?;
            for &id in rest {
                stats.generated.push(id);
                let keep_going = on_token(id)?;
                if stop.contains(&id) {
                    stats.stopped = true;
                    break 'outer;
                }
                if !keep_going {
                    break 'outer;
                }
            }
            next = *last;
        }
        stats.decode_time = t1.elapsed();
        stats.peak_pool_bytes = self.model.pool_stats().peak;
        Ok(stats)
    }

    /// Copies the state to the CPU.
    pub fn save_state(&self) -> Result<SavedState> {
        let m = &self.model.inner;
        let p = self.parity as usize;
        let tensors = self
            .state
            .tensors()
            .iter()
            .map(|t| read_f32(&m.gpu, &m.pool, t.buf, t.offset[p] / 4, t.len as u64))
            .collect::<Result<Vec<_>>>()?;
        Ok(SavedState {
            position: self.position,
            tensors,
        })
    }

    /// Replaces the state with a saved one (from a session of the same model shape).
    pub fn restore_state(&mut self, saved: &SavedState) -> Result<()> {
        let m = self.model.inner.clone();
        let tensors = self.state.tensors();
        let fits = saved.tensors.len() == tensors.len()
            && saved.tensors.iter().zip(&tensors).all(|(data, t)| data.len() == t.len);
        if !fits {
            return Err(Error::Input("saved state does not match this model's shape".into()));
        }
        for (data, t) in saved.tensors.iter().zip(&tensors) {
            m.gpu
                .queue
                .write_buffer(t.buf.raw(), t.offset[0], bytemuck::cast_slice(data));
        }
        self.parity = 0;
        self.position = saved.position;
        Ok(())
    }

    /// Bytes of GPU memory held by this session's state.
    pub fn state_bytes(&self) -> u64 {
        self.state.bytes()
    }
}
