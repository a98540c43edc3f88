//! Plans: recorded sequences of dispatches and copies that are built once and replayed.
//!
//! A [`PlanBuilder`] collects dispatches (pipeline, parameters, buffer slices, grid). `finish`
//! compiles the plan's pipelines not compiled yet (concurrently), packs every dispatch's
//! parameters into one uniform buffer and creates the bind groups, so
//! replaying a plan allocates nothing. `run` records consecutive dispatches into one compute pass
//! and splits the work into several command buffers under a [`SubmitBudget`], so a long prompt
//! never becomes one giant submission (some drivers kill GPU work that runs too long).

use super::device::Gpu;
use super::kernels::{compile_concurrently, LazyPipeline};
use super::pool::{BufferPool, GpuBuffer};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Limits on how much work goes into one submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmitBudget {
    /// Dispatches per command buffer.
    pub max_dispatches: usize,
    /// Workgroups per command buffer (a rough measure of GPU time).
    pub max_workgroups: u64,
}

impl Default for SubmitBudget {
    fn default() -> Self {
        SubmitBudget {
            max_dispatches: 512,
            max_workgroups: 1 << 22,
        }
    }
}

/// A range of a buffer used as one binding.
#[derive(Clone, Debug)]
pub struct Slice {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl Slice {
    /// The whole requested length of a pooled buffer.
    pub fn all(b: &GpuBuffer) -> Slice {
        Slice {
            buffer: b.raw().clone(),
            offset: 0,
            // Whole vec4s where the allocation allows, so kernels may view it as array<vec4<..>>.
            size: b.len().max(16).next_multiple_of(16).min(b.capacity()),
        }
    }
    /// `size` bytes starting at `offset` of a pooled buffer.
    pub fn range(b: &GpuBuffer, offset: u64, size: u64) -> Slice {
        Slice {
            buffer: b.raw().clone(),
            offset,
            size: size.max(4).next_multiple_of(4),
        }
    }
}

/// Estimated memory traffic and arithmetic of one dispatch, for achieved-rate reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub bytes: f64,
    pub flops: f64,
}

enum Pending {
    Dispatch {
        label: &'static str,
        cost: Cost,
        pipeline: LazyPipeline,
        params_offset: u64,
        params_len: u64,
        buffers: Vec<Slice>,
        groups: [u32; 3],
    },
    Copy {
        src: Slice,
        dst: Slice,
    },
    Split,
}

enum Item {
    Dispatch {
        label: &'static str,
        cost: Cost,
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Copy {
        src: Slice,
        dst: Slice,
    },
    /// A command-buffer boundary honoured by [`Plan::run_queued`] (ignored by `run`).
    Split,
}

/// Collects the work of a plan.
pub struct PlanBuilder {
    gpu: Arc<Gpu>,
    params: Vec<u8>,
    items: Vec<Pending>,
    keep: Vec<Arc<GpuBuffer>>,
    weight_staging: Option<Slice>,
    /// The last `dispatch` call was skipped (an empty grid): the `cost` that follows is its.
    skipped_last: bool,
}

impl PlanBuilder {
    pub fn new(gpu: Arc<Gpu>) -> Self {
        PlanBuilder {
            gpu,
            params: Vec::new(),
            items: Vec::new(),
            keep: Vec::new(),
            weight_staging: None,
            skipped_last: false,
        }
    }

    /// Where the plan's long GEMMs over quantized weights may expand them to f16 first
    /// (`ops::matmul`): a scratch buffer the caller keeps alive as long as the plan.
    pub fn stage_weights_in(&mut self, staging: Slice) {
        self.weight_staging = Some(staging);
    }

    /// The buffer set by [`stage_weights_in`](Self::stage_weights_in), if any.
    pub fn weight_staging(&self) -> Option<&Slice> {
        self.weight_staging.as_ref()
    }

    /// Adds a dispatch. `params` is bound at binding 0 (uniform), `buffers` at 1, 2, ...
    /// A grid dimension of zero skips the dispatch (nothing to do). The pipeline is compiled by
    /// [`finish`](Self::finish) if it is not compiled yet.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        label: &'static str,
        pipeline: &LazyPipeline,
        params: &P,
        buffers: &[Slice],
        groups: [u32; 3],
    ) -> Result<()> {
        self.skipped_last = groups.contains(&0);
        if self.skipped_last {
            return Ok(());
        }
        let max = self.gpu.device.limits().max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Limit(format!(
                "{label}: grid {groups:?} exceeds {max} workgroups per dimension"
            )));
        }
        let caps = &self.gpu.caps;
        let mut align = caps.min_uniform_offset_alignment.max(16);
        if caps.params_in_storage {
            align = align.max(caps.min_storage_offset_alignment);
        }
        let align = align as usize;
        let offset = self.params.len().next_multiple_of(align);
        self.params.resize(offset, 0);
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        let len = std::mem::size_of::<P>().next_multiple_of(16);
        self.params.resize(offset + len, 0);
        self.items.push(Pending::Dispatch {
            label,
            cost: Cost::default(),
            pipeline: pipeline.clone(),
            params_offset: offset as u64,
            params_len: len as u64,
            buffers: buffers.to_vec(),
            groups,
        });
        Ok(())
    }

    /// Sets the cost estimate of the dispatch added last (nothing, if that one was skipped).
    pub fn cost(&mut self, bytes: f64, flops: f64) {
        if self.skipped_last {
            return;
        }
        if let Some(Pending::Dispatch { cost, .. }) = self.items.last_mut() {
            *cost = Cost { bytes, flops };
        }
    }

    /// Adds a buffer-to-buffer copy (ends the current compute pass when run).
    pub fn copy(&mut self, src: Slice, dst: Slice) {
        self.items.push(Pending::Copy { src, dst });
    }

    /// Marks a command-buffer boundary: [`Plan::run_queued`] starts a new command buffer here,
    /// so the work on either side can be recorded on different threads. `run` ignores it.
    pub fn split(&mut self) {
        if !matches!(self.items.last(), None | Some(Pending::Split)) {
            self.items.push(Pending::Split);
        }
    }

    /// Keeps a buffer alive as long as the plan.
    pub fn keep(&mut self, b: Arc<GpuBuffer>) {
        self.keep.push(b);
    }

    pub fn dispatch_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Pending::Dispatch { .. }))
            .count()
    }

    /// The pipelines the plan dispatches so far, each once: what it will compile at
    /// [`finish`](Self::finish) if they are not compiled by then (a model's warm set at load).
    pub fn pipelines(&self) -> Vec<LazyPipeline> {
        let mut out: Vec<LazyPipeline> = Vec::new();
        for item in &self.items {
            if let Pending::Dispatch { pipeline, .. } = item {
                if !out.iter().any(|p| p.same(pipeline)) {
                    out.push(pipeline.clone());
                }
            }
        }
        out
    }

    /// Compiles the pipelines not compiled yet (on several threads; a compile error is the
    /// crate's `Error::Kernel`), uploads the parameters and creates the bind groups.
    pub fn finish(self, pool: &BufferPool) -> Result<Plan> {
        compile_concurrently(&self.pipelines());
        // Resolved before the plan's error scope is pushed, so a compile error returns with no
        // scope left open.
        let compiled: Vec<wgpu::ComputePipeline> = self
            .items
            .iter()
            .filter_map(|i| match i {
                Pending::Dispatch { pipeline, .. } => Some(pipeline.get()),
                _ => None,
            })
            .collect::<Result<_>>()?;
        let mut compiled = compiled.into_iter();
        let device = &self.gpu.device;
        let params_bytes = self.params.len().max(16) as u64;
        let params = if self.gpu.caps.params_in_storage {
            pool.storage(params_bytes, super::Category::Scratch, "plan params")?
        } else {
            pool.uniform(params_bytes, "plan params")?
        };
        if !self.params.is_empty() {
            self.gpu.queue.write_buffer(params.raw(), 0, &self.params);
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut items = Vec::with_capacity(self.items.len());
        for p in self.items {
            match p {
                Pending::Dispatch {
                    label,
                    cost,
                    pipeline: _,
                    params_offset,
                    params_len,
                    buffers,
                    groups,
                } => {
                    let pipeline = compiled
                        .next()
                        .ok_or_else(|| Error::Gpu("building a plan: fewer pipelines than dispatches".into()))?;
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: params.raw(),
                            offset: params_offset,
                            size: std::num::NonZeroU64::new(params_len),
                        }),
                    }];
                    for (i, s) in buffers.iter().enumerate() {
                        entries.push(wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &s.buffer,
                                offset: s.offset,
                                size: std::num::NonZeroU64::new(s.size),
                            }),
                        });
                    }
                    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(label),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    });
                    items.push(Item::Dispatch {
                        label,
                        cost,
                        pipeline,
                        bind_group,
                        groups,
                    });
                }
                Pending::Copy { src, dst } => items.push(Item::Copy { src, dst }),
                Pending::Split => items.push(Item::Split),
            }
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("building a plan: {e}")));
        }
        Ok(Plan {
            items,
            _params: params,
            _keep: self.keep,
        })
    }
}

/// A finished, replayable sequence of GPU work.
pub struct Plan {
    items: Vec<Item>,
    _params: GpuBuffer,
    _keep: Vec<Arc<GpuBuffer>>,
}

impl Plan {
    pub fn dispatch_count(&self) -> usize {
        self.items.iter().filter(|i| matches!(i, Item::Dispatch { .. })).count()
    }

    /// Records the plan into as few passes and command buffers as the budget allows and submits.
    /// Does not wait for completion.
    pub fn run(&self, gpu: &Gpu, budget: SubmitBudget) -> Result<()> {
        let mut buffers = Vec::new();
        self.record(gpu, budget, &mut |cb| buffers.push(cb));
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        for cb in buffers {
            gpu.queue.submit([cb]);
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("running a plan: {e}")));
        }
        Ok(())
    }

    /// How many command buffers `run` (`queued: false`) or `run_queued` (`true`) records.
    pub fn command_buffer_count(&self, budget: SubmitBudget, queued: bool) -> usize {
        self.partition(budget, queued).len()
    }

    /// Records into command buffers, handing each one to `emit` as soon as it is full.
    fn record(&self, gpu: &Gpu, budget: SubmitBudget, emit: &mut dyn FnMut(wgpu::CommandBuffer)) {
        for range in self.partition(budget, false) {
            emit(self.record_range(gpu, range));
        }
    }

    /// Splits the items into the ranges that go into one command buffer each: at most
    /// `budget.max_dispatches` dispatches, and a new buffer once `budget.max_workgroups` is
    /// reached; with `at_splits`, also at every [`PlanBuilder::split`] mark.
    fn partition(&self, budget: SubmitBudget, at_splits: bool) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let (mut start, mut dispatches, mut workgroups) = (0usize, 0usize, 0u64);
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Item::Split => {
                    if at_splits && dispatches > 0 {
                        out.push(start..i);
                        (start, dispatches, workgroups) = (i, 0, 0);
                    }
                }
                Item::Copy { .. } => {}
                Item::Dispatch { groups, .. } => {
                    if dispatches >= budget.max_dispatches || workgroups >= budget.max_workgroups {
                        out.push(start..i);
                        (start, dispatches, workgroups) = (i, 0, 0);
                    }
                    dispatches += 1;
                    workgroups += groups.iter().map(|&g| g as u64).product::<u64>();
                }
            }
        }
        let rest = start..self.items.len();
        if self.items[rest.clone()].iter().any(|i| !matches!(i, Item::Split)) {
            out.push(rest);
        }
        out
    }

    /// Records `range` of the items into one command buffer: consecutive dispatches share one
    /// compute pass, a copy ends it.
    fn record_range(&self, gpu: &Gpu, range: std::ops::Range<usize>) -> wgpu::CommandBuffer {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("plan") });
        let items = &self.items[range];
        let mut i = 0;
        while i < items.len() {
            match &items[i] {
                Item::Split => i += 1,
                Item::Copy { src, dst } => {
                    enc.copy_buffer_to_buffer(
                        &src.buffer,
                        src.offset,
                        &dst.buffer,
                        dst.offset,
                        Some(src.size.min(dst.size)),
                    );
                    i += 1;
                }
                Item::Dispatch { .. } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("plan pass"),
                        timestamp_writes: None,
                    });
                    loop {
                        match items.get(i) {
                            Some(Item::Dispatch {
                                pipeline,
                                bind_group,
                                groups,
                                ..
                            }) => {
                                pass.set_pipeline(pipeline);
                                pass.set_bind_group(0, bind_group, &[]);
                                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                            }
                            Some(Item::Split) => {}
                            _ => break,
                        }
                        i += 1;
                    }
                }
            }
        }
        enc.finish()
    }

    /// Like [`run`](Self::run), but the command buffers (cut by the budget and at every
    /// [`PlanBuilder::split`] mark) are recorded by `threads` worker threads in parallel (0 = one
    /// per core, at most 8) and submitted in plan order as soon as each one and all before it are
    /// ready, so the GPU starts on the first while later ones are still being recorded.
    pub fn run_queued(&self, gpu: &Gpu, budget: SubmitBudget, threads: usize) -> Result<()> {
        let ranges = self.partition(budget, true);
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
            n => n,
        }
        .min(ranges.len());
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut failure = None;
        if threads <= 1 {
            for r in ranges {
                gpu.queue.submit([self.record_range(gpu, r)]);
            }
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<wgpu::CommandBuffer>)>();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    let (tx, next, ranges) = (tx.clone(), &next, &ranges);
                    s.spawn(move || loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(r) = ranges.get(i) else { break };
                        // Error scopes are per thread: each worker catches its own.
                        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
                        let cb = self.record_range(gpu, r.clone());
                        let res = match pollster::block_on(scope.pop()) {
                            Some(e) => Err(Error::Gpu(format!("recording a plan: {e}"))),
                            None => Ok(cb),
                        };
                        if tx.send((i, res)).is_err() {
                            break;
                        }
                    });
                }
                drop(tx);
                // Submit in order: hold buffers that arrive early until their turn.
                let mut ready = std::collections::BTreeMap::new();
                let mut want = 0;
                for (i, res) in rx {
                    match res {
                        Ok(cb) => {
                            ready.insert(i, cb);
                        }
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                    while failure.is_none() {
                        let Some(cb) = ready.remove(&want) else { break };
                        gpu.queue.submit([cb]);
                        want += 1;
                    }
                }
            });
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("running a plan: {e}")));
        }
        failure.map_or(Ok(()), Err)
    }
}

/// GPU time of one kernel label summed over a profiled run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTime {
    pub label: &'static str,
    pub dispatches: usize,
    pub seconds: f64,
    pub bytes: f64,
    pub flops: f64,
}

impl KernelTime {
    pub fn gb_per_s(&self) -> f64 {
        self.bytes / self.seconds.max(1e-12) / 1e9
    }
    pub fn tflop_per_s(&self) -> f64 {
        self.flops / self.seconds.max(1e-12) / 1e12
    }
}

/// How a profile timed its dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileClock {
    /// GPU timestamps written at the start and end of each dispatch's own compute pass.
    Timestamps,
    /// The wall time of each dispatch submitted on its own and waited for, where the adapter
    /// has no timestamp queries or its timestamps read zero (some macOS versions): it includes
    /// the submission and wake-up latency (tens of microseconds a dispatch), so short kernels
    /// read slower than they run. The reason is given.
    Submissions(&'static str),
}

impl ProfileClock {
    /// One line for the profile's reader, where the times are not the GPU's own.
    pub fn note(&self) -> Option<String> {
        match self {
            ProfileClock::Timestamps => None,
            ProfileClock::Submissions(why) => Some(format!(
                "per-kernel times are wall times of one dispatch per submission ({why}): each includes \
                 the submission latency, so short kernels read slower than they run"
            )),
        }
    }
}

/// A profiled run: time per kernel label, slowest first, and how it was measured.
#[derive(Clone, Debug)]
pub struct Profile {
    pub kernels: Vec<KernelTime>,
    pub clock: ProfileClock,
}

/// Adds one dispatch's time to its label's entry.
fn add_time(times: &mut Vec<KernelTime>, label: &'static str, cost: Cost, seconds: f64) {
    match times.iter_mut().find(|t| t.label == label) {
        Some(t) => {
            t.dispatches += 1;
            t.seconds += seconds;
            t.bytes += cost.bytes;
            t.flops += cost.flops;
        }
        None => times.push(KernelTime {
            label,
            dispatches: 1,
            seconds,
            bytes: cost.bytes,
            flops: cost.flops,
        }),
    }
}

/// Whether timestamps measured anything: some drivers return zeros for every query.
pub fn timestamps_usable(times: &[KernelTime]) -> bool {
    times.is_empty() || times.iter().any(|t| t.seconds > 0.0)
}

impl Plan {
    /// Runs the plan once, timing every dispatch: by GPU timestamps where the adapter has them
    /// ([`ProfileClock::Timestamps`]), else by submitting each dispatch alone
    /// ([`ProfileClock::Submissions`]). Where the timestamps all read zero, `rerun` is called
    /// (to put back what the first run changed) and the plan runs again timed by submissions.
    pub fn run_profiled(&self, gpu: &Gpu, pool: &BufferPool, rerun: &mut dyn FnMut() -> Result<()>) -> Result<Profile> {
        if !gpu.caps.timestamp {
            return Ok(Profile {
                kernels: self.run_by_submissions(gpu)?,
                clock: ProfileClock::Submissions("the adapter has no timestamp queries"),
            });
        }
        let kernels = self.run_timestamped(gpu, pool)?;
        if timestamps_usable(&kernels) {
            return Ok(Profile {
                kernels,
                clock: ProfileClock::Timestamps,
            });
        }
        rerun()?;
        Ok(Profile {
            kernels: self.run_by_submissions(gpu)?,
            clock: ProfileClock::Submissions("the adapter's timestamps read zero"),
        })
    }

    /// Every dispatch submitted in its own command buffer and waited for, timed on the host.
    fn run_by_submissions(&self, gpu: &Gpu) -> Result<Vec<KernelTime>> {
        gpu.wait()?;
        let mut times: Vec<KernelTime> = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let Item::Dispatch { label, cost, .. } = item else {
                if matches!(item, Item::Copy { .. }) {
                    gpu.queue.submit([self.record_range(gpu, i..i + 1)]);
                }
                continue;
            };
            let t0 = std::time::Instant::now();
            gpu.queue.submit([self.record_range(gpu, i..i + 1)]);
            gpu.wait()?;
            add_time(&mut times, label, *cost, t0.elapsed().as_secs_f64());
        }
        gpu.wait()?;
        times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(times)
    }

    /// Every dispatch in its own compute pass bracketed by timestamp writes (this works on every
    /// adapter with TIMESTAMP_QUERY, including Apple GPUs, which have no timestamps inside
    /// passes).
    fn run_timestamped(&self, gpu: &Gpu, pool: &BufferPool) -> Result<Vec<KernelTime>> {
        // One query set holds at most 4096 queries: profile in batches of 2048 dispatches.
        const BATCH: usize = 2048;
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        let mut times: Vec<KernelTime> = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: (2 * BATCH) as u32,
            });
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
            let mut labels = Vec::new();
            while i < self.items.len() && labels.len() < BATCH {
                match &self.items[i] {
                    Item::Split => {}
                    Item::Copy { src, dst } => {
                        enc.copy_buffer_to_buffer(
                            &src.buffer,
                            src.offset,
                            &dst.buffer,
                            dst.offset,
                            Some(src.size.min(dst.size)),
                        );
                    }
                    Item::Dispatch {
                        label,
                        cost,
                        pipeline,
                        bind_group,
                        groups,
                    } => {
                        let q = (2 * labels.len()) as u32;
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some(label),
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: &qs,
                                beginning_of_pass_write_index: Some(q),
                                end_of_pass_write_index: Some(q + 1),
                            }),
                        });
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        labels.push((*label, *cost));
                    }
                }
                i += 1;
            }
            let n = 2 * labels.len().max(1);
            let resolve = pool.alloc(
                (n * 8) as u64,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                super::Category::Scratch,
                "timestamps",
            )?;
            enc.resolve_query_set(&qs, 0..n as u32, resolve.raw(), 0);
            gpu.queue.submit([enc.finish()]);
            let raw = super::readback::read_bytes(gpu, pool, &resolve, 0, (n * 8) as u64)?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            for (k, (label, cost)) in labels.iter().enumerate() {
                let dt = ticks[2 * k + 1].saturating_sub(ticks[2 * k]) as f64 * period;
                add_time(&mut times, label, *cost, dt);
            }
        }
        times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(times)
    }
}

#[cfg(test)]
mod tests {
    use super::{timestamps_usable, KernelTime};

    #[test]
    fn all_zero_timestamps_are_unusable() {
        let t = |seconds| KernelTime {
            label: "k",
            dispatches: 1,
            seconds,
            ..Default::default()
        };
        assert!(!timestamps_usable(&[t(0.0), t(0.0)]));
        assert!(timestamps_usable(&[t(0.0), t(1e-6)]));
        assert!(timestamps_usable(&[]));
    }
}
