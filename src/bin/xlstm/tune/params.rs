//! The tunable settings: their documented defaults, the partial form stored in the cache and
//! given as flags ([`Settings`]), the complete form a trial runs with ([`Params`]), and the search
//! space over them.

use serde::{Deserialize, Serialize};
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::model::schedule::PrefillStrategy;
use xlstm_wgpu::ops::KernelShapes;
use xlstm_wgpu::session::SessionOptions;

/// Where the knobs' values go: the session options, and the kernel shapes a model is loaded
/// with. The documented defaults are read from the library's defaults of both.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    pub session: SessionOptions,
    pub shapes: KernelShapes,
}

/// A knob's value type: how it is stored in `tuned.json`, written as text, and coded as a number
/// for the search (which works on lists of numbers).
pub trait KnobValue: Copy {
    /// The form in `tuned.json`. The strategy is kept as text there, so that an entry naming a
    /// strategy this build does not know is ignored (with a warning) instead of making the
    /// whole file unreadable, and survives a later save.
    type Stored: Clone + std::fmt::Debug + std::fmt::Display + PartialEq + Eq + Serialize + serde::de::DeserializeOwned;
    fn store(self) -> Self::Stored;
    fn load(s: &Self::Stored) -> Result<Self>;
    fn code(self) -> usize;
    fn from_code(v: usize) -> Self;
    fn text(self) -> String;
}

impl KnobValue for usize {
    type Stored = usize;
    fn store(self) -> usize {
        self
    }
    fn load(s: &usize) -> Result<usize> {
        Ok(*s)
    }
    fn code(self) -> usize {
        self
    }
    fn from_code(v: usize) -> usize {
        v
    }
    fn text(self) -> String {
        self.to_string()
    }
}

impl KnobValue for u32 {
    type Stored = u32;
    fn store(self) -> u32 {
        self
    }
    fn load(s: &u32) -> Result<u32> {
        Ok(*s)
    }
    fn code(self) -> usize {
        self as usize
    }
    fn from_code(v: usize) -> u32 {
        v as u32
    }
    fn text(self) -> String {
        self.to_string()
    }
}

impl KnobValue for bool {
    type Stored = bool;
    fn store(self) -> bool {
        self
    }
    fn load(s: &bool) -> Result<bool> {
        Ok(*s)
    }
    fn code(self) -> usize {
        self as usize
    }
    fn from_code(v: usize) -> bool {
        v != 0
    }
    fn text(self) -> String {
        self.to_string()
    }
}

/// Prefill strategies in the order of their codes.
const STRATEGIES: [PrefillStrategy; 4] = [
    PrefillStrategy::Scheduled,
    PrefillStrategy::Fused,
    PrefillStrategy::Queued,
    PrefillStrategy::Recurrent,
];

impl KnobValue for PrefillStrategy {
    type Stored = String;
    fn store(self) -> String {
        self.name().to_string()
    }
    fn load(s: &String) -> Result<PrefillStrategy> {
        s.parse()
    }
    fn code(self) -> usize {
        STRATEGIES.iter().position(|&x| x == self).unwrap_or(0)
    }
    fn from_code(v: usize) -> PrefillStrategy {
        STRATEGIES[v.min(STRATEGIES.len() - 1)]
    }
    fn text(self) -> String {
        self.name().to_string()
    }
}

/// What a knob's list of candidate values may depend on.
pub struct SpaceContext<'a> {
    pub num_heads: usize,
    /// Prompt length of the timed prefill.
    pub seq: usize,
    pub base: &'a Params,
}

/// The codes of some strategies (a search dimension of strategy codes).
fn strategy_codes(s: &[PrefillStrategy]) -> Vec<usize> {
    s.iter().map(|&x| x.code()).collect()
}

/// Declares the tunable knobs once. Each line generates: a [`Knob`] variant; a field of
/// [`Params`] (complete, typed), of [`Settings`] (partial, as `tuned.json` stores it; the JSON key
/// is the field name) and of [`KnobArgs`] (the `--flag`, named after the field, whose help shows
/// the documented default); where the value goes in a [`RunConfig`]; its sanity bounds (checked
/// by [`Params::validate`]); the values [`Space`] searches; the targets it affects.
macro_rules! knobs {
    ($(
        $variant:ident $field:ident: $ty:ty, short $short:literal,
        at $place:ident $(. $path:ident)+,
        bounds $bounds:expr,
        affects (prefill $prefill:literal, decode $decode:literal),
        values $values:expr,
        help $help:literal;
    )+) => {
        /// One tunable setting (a flag of `xlstm generate`, `score` and `bench`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Knob {
            $($variant,)+
        }

        impl Knob {
            pub const ALL: [Knob; [$(stringify!($variant)),+].len()] = [$(Knob::$variant),+];

            /// The name in CSV columns, JSON keys and summaries (the flag without `--`, with `_`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Knob::$variant => stringify!($field),)+
                }
            }

            /// The column heading in the table of a tune run.
            pub fn short(self) -> &'static str {
                match self {
                    $(Knob::$variant => $short,)+
                }
            }

            /// The flag's help, ending in the documented default.
            pub fn help(self) -> String {
                let text = match self {
                    $(Knob::$variant => $help,)+
                };
                format!("{text} [default: {}]", Params::default().text(self))
            }

            /// Whether the knob changes prefill throughput.
            pub fn affects_prefill(self) -> bool {
                match self {
                    $(Knob::$variant => $prefill,)+
                }
            }

            /// Whether the knob changes decode throughput.
            pub fn affects_decode(self) -> bool {
                match self {
                    $(Knob::$variant => $decode,)+
                }
            }

            /// Sanity bounds of the value (`None`: every value of the type is accepted here).
            fn bounds(self) -> Option<(usize, usize)> {
                match self {
                    $(Knob::$variant => $bounds,)+
                }
            }

            /// The values the search tries (before the default's value is added).
            fn candidates(self, c: &SpaceContext<'_>) -> Vec<usize> {
                match self {
                    $(Knob::$variant => {
                        let values: fn(&SpaceContext<'_>) -> Vec<usize> = $values;
                        values(c)
                    })+
                }
            }
        }

        /// Every tunable setting, complete: what one trial (or one command) runs with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct Params {
            $(pub $field: $ty,)+
        }

        impl Params {
            /// The knobs' values in `c`.
            pub fn from_config(c: &RunConfig) -> Params {
                Params {
                    $($field: c.$place$(.$path)+,)+
                }
            }

            /// `c` with these values.
            pub fn apply(&self, c: &mut RunConfig) {
                $(c.$place$(.$path)+ = self.$field;)+
            }

            /// The value of one knob as a number (the prefill strategy as its code).
            pub fn get(&self, k: Knob) -> usize {
                match k {
                    $(Knob::$variant => KnobValue::code(self.$field),)+
                }
            }

            pub fn set(&mut self, k: Knob, v: usize) {
                match k {
                    $(Knob::$variant => self.$field = KnobValue::from_code(v),)+
                }
            }

            /// The value of one knob as text (as a flag takes it).
            pub fn text(&self, k: Knob) -> String {
                match k {
                    $(Knob::$variant => KnobValue::text(self.$field),)+
                }
            }

            /// These settings with every value `s` holds put over them.
            pub fn overlay(mut self, s: &Settings) -> Result<Params> {
                $(if let Some(v) = &s.$field {
                    self.$field = KnobValue::load(v)?;
                })+
                Ok(self)
            }
        }

        /// Some of the tunable settings: what flags give, what the cache stores. `None` = not given.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Settings {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<<$ty as KnobValue>::Stored>,
            )+
        }

        impl Settings {
            /// Whether the knob has a value.
            pub fn has(&self, k: Knob) -> bool {
                match k {
                    $(Knob::$variant => self.$field.is_some(),)+
                }
            }

            /// Takes the knob's value from `p`.
            pub fn set_from(&mut self, k: Knob, p: &Params) {
                match k {
                    $(Knob::$variant => self.$field = Some(KnobValue::store(p.$field)),)+
                }
            }

            /// The stored value of a knob as text.
            fn text(&self, k: Knob) -> Option<String> {
                match k {
                    $(Knob::$variant => self.$field.as_ref().map(|v| v.to_string()),)+
                }
            }

            /// `other`'s values put over these.
            pub fn merged(&self, other: &Settings) -> Settings {
                let mut out = self.clone();
                $(if other.$field.is_some() {
                    out.$field.clone_from(&other.$field);
                })+
                out
            }
        }

        /// The tunable flags of `generate`, `score`, `bench` and `tune`. Each is an `Option`: a
        /// value given as a flag wins, else the tuned default stored by `xlstm tune`, else the
        /// documented default that `--help` shows.
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct KnobArgs {
            $(
                #[arg(long, help = Knob::$variant.help(), value_parser = <$ty as KnobFlag>::parser(Knob::$variant))]
                pub $field: Option<$ty>,
            )+
        }

        impl KnobArgs {
            /// The values given, as settings.
            pub fn settings(&self) -> Settings {
                Settings {
                    $($field: self.$field.map(KnobValue::store),)+
                }
            }
        }
    };
}

knobs! {
    Prefill prefill: PrefillStrategy, short "prefill",
        at session.schedule.strategy,
        bounds None,
        affects (prefill true, decode false),
        // `recurrent` is the reference path, slower than the chunkwise ones at every prompt
        // length worth tuning for; pin it with --prefill recurrent to tune it.
        values |_| strategy_codes(&[PrefillStrategy::Scheduled, PrefillStrategy::Fused, PrefillStrategy::Queued]),
        help "Prefill strategy: scheduled (head-band x chunk-tile dispatches), queued (scheduled, with \
              the command buffers of each head band recorded by a CPU thread pool), fused, or recurrent.";
    ChunkSize chunk_size: usize, short "chunk",
        at session.schedule.chunk_size,
        bounds Some((1, xlstm_wgpu::ops::MAX_CHUNK)),
        affects (prefill true, decode false),
        values |_| vec![8, 16, 32, 64, 128, 256],
        help "Chunk length of the chunkwise mLSTM prefill (1..=256).";
    HeadsPerBand heads_per_band: usize, short "band",
        at session.schedule.heads_per_band,
        bounds Some((0, 1 << 16)),
        affects (prefill true, decode false),
        values |c| [0, 1, 2, 4, 8, 16].into_iter().filter(|&h| h < c.num_heads).collect(),
        help "Heads per dispatch of the chunkwise phases (0 = all).";
    TileChunks tile_chunks: usize, short "tile",
        at session.schedule.tile_chunks,
        bounds Some((0, 1 << 16)),
        affects (prefill true, decode false),
        values |_| vec![0, 1, 2, 4, 8, 16, 32],
        help "Chunks per dispatch of the chunkwise phases (0 = all).";
    SubmitDispatches submit_dispatches: usize, short "submit",
        at session.submit.max_dispatches,
        bounds Some((1, 1 << 24)),
        affects (prefill true, decode true),
        values |_| vec![64, 128, 256, 512, 1024, 2048, 4096, 16384],
        help "Dispatches per submission.";
    Segment segment: usize, short "segment",
        at session.max_segment_tokens,
        bounds Some((1, 1 << 24)),
        affects (prefill true, decode false),
        // Segments at least as long as the tuning prompt all run it in one pass: keep one of
        // them (the default where it is one) so that no untested length is stored.
        values |c| {
            let mut v: Vec<usize> = [128, 256, 512, 1024, 2048, 4096, 8192]
                .into_iter()
                .filter(|&s| s < c.seq)
                .collect();
            v.push(if c.base.segment >= c.seq { c.base.segment } else { c.seq });
            v
        },
        help "Longest prompt piece run as one forward pass.";
    RecordThreads record_threads: usize, short "threads",
        at session.record_threads,
        bounds Some((0, 256)),
        affects (prefill true, decode false),
        values |_| vec![0, 1, 2, 4, 8],
        help "CPU threads recording command buffers for `--prefill queued` (0 = one per core, at \
              most 8).";
    DecodeBatch decode_batch: usize, short "batch",
        at session.decode_batch,
        bounds Some((1, xlstm_wgpu::session::MAX_DECODE_BATCH)),
        affects (prefill false, decode true),
        values |_| vec![1, 2, 4, 8, 16, 32, 64],
        help "Greedy decode steps per submission.";
    GemvLanes gemv_lanes: u32, short "lanes",
        at shapes.gemv_lanes,
        // Checked by `KernelShapes::validate`.
        bounds None,
        affects (prefill false, decode true),
        values |_| vec![8, 16, 32, 64, 128, 256],
        help "Invocations per weight row in the decode GEMV (8, 16, 32, 64, 128, 256).";
    HeadNormRows head_norm_rows: u32, short "norm_rows",
        at shapes.head_norm_rows,
        // Checked by `KernelShapes::validate`.
        bounds None,
        affects (prefill false, decode true),
        values |_| vec![4, 8, 16, 32],
        help "Rows per workgroup of the decode out-projection GEMV with the fused head norm (4, 8, \
              16, 32).";
    FusedHeadNorm fused_head_norm: bool, short "fused_norm",
        at shapes.fused_head_norm,
        bounds None,
        affects (prefill false, decode true),
        values |_| vec![0, 1],
        help "Decode runs the head norm and output gate inside the out-projection GEMV (true), or \
              as a kernel of its own before a plain GEMV (false).";
}

/// How a knob's flag parses its value, so that a value a run would refuse is a usage error
/// (clap's message, exit code 2): the strategy by clap's choices, numbers checked as
/// [`Params::validate`] and [`Params::session_options`] check them.
trait KnobFlag {
    fn parser(k: Knob) -> clap::builder::ValueParser;
}

impl KnobFlag for PrefillStrategy {
    fn parser(_: Knob) -> clap::builder::ValueParser {
        clap::value_parser!(PrefillStrategy).into()
    }
}

impl KnobFlag for bool {
    fn parser(_: Knob) -> clap::builder::ValueParser {
        clap::builder::BoolishValueParser::new().into()
    }
}

impl KnobFlag for usize {
    fn parser(k: Knob) -> clap::builder::ValueParser {
        checked_number::<usize>(k)
    }
}

impl KnobFlag for u32 {
    fn parser(k: Knob) -> clap::builder::ValueParser {
        checked_number::<u32>(k)
    }
}

/// A whole number that the documented defaults with this knob set to it accept.
fn checked_number<T>(k: Knob) -> clap::builder::ValueParser
where
    T: KnobValue + std::str::FromStr + Clone + Send + Sync + 'static,
{
    clap::builder::ValueParser::new(move |text: &str| -> std::result::Result<T, String> {
        let v: T = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number in range"))?;
        let mut p = Params::default();
        p.set(k, v.code());
        p.validate()
            .and_then(|()| p.session_options().map(drop))
            .map_err(|e| match e {
                Error::Input(m) => m,
                e => e.to_string(),
            })?;
        Ok(v)
    })
}

/// The documented defaults (the values `--help` shows): the library's.
impl Default for Params {
    fn default() -> Self {
        Params::from_config(&RunConfig::default())
    }
}

impl Params {
    /// Checks that a run accepts every value: what a session or the kernels would refuse later
    /// (and blame on the flags), refused here by setting name. Bounds with no such check are
    /// generous sanity limits.
    pub fn validate(&self) -> Result<()> {
        for k in Knob::ALL {
            if let Some((lo, hi)) = k.bounds() {
                let v = self.get(k);
                if v < lo || v > hi {
                    return Err(Error::Input(format!("{} {v} is outside {lo}..={hi}", k.name())));
                }
            }
        }
        self.kernel_shapes().validate()
    }

    /// The given knobs of these settings as a partial set.
    pub fn settings(&self, knobs: &[Knob]) -> Settings {
        let mut s = Settings::default();
        for &k in knobs {
            s.set_from(k, self);
        }
        s
    }

    /// The library's defaults with these settings.
    fn config(&self) -> RunConfig {
        let mut c = RunConfig::default();
        self.apply(&mut c);
        c
    }

    /// Session options with these settings.
    pub fn session_options(&self) -> Result<SessionOptions> {
        if self.submit_dispatches == 0 {
            return Err(Error::Input("--submit-dispatches must be positive".into()));
        }
        Ok(self.config().session)
    }

    /// Kernel shapes with these settings (every other shape at its default).
    pub fn kernel_shapes(&self) -> KernelShapes {
        self.config().shapes
    }

    /// The same behaviour with settings that cannot matter replaced by those of `base`, so two
    /// trials that would run identically compare equal: the band and tile of `fused` and
    /// `recurrent`, the thread count of everything but `queued`, a band of all heads.
    pub fn canonical(mut self, base: &Params, num_heads: usize) -> Params {
        if !matches!(self.prefill, PrefillStrategy::Scheduled | PrefillStrategy::Queued) {
            self.heads_per_band = base.heads_per_band;
            self.tile_chunks = base.tile_chunks;
        }
        if self.prefill == PrefillStrategy::Recurrent {
            self.chunk_size = base.chunk_size;
        }
        if self.prefill != PrefillStrategy::Queued {
            self.record_threads = base.record_threads;
        }
        if self.heads_per_band >= num_heads {
            self.heads_per_band = 0;
        }
        self
    }
}

impl Settings {
    /// Checks the values held, over the defaults (see [`Params::validate`]).
    pub fn validate(&self) -> Result<()> {
        Params::default().overlay(self)?.validate()
    }

    /// The knobs that have a value.
    pub fn knobs(&self) -> Vec<Knob> {
        Knob::ALL.into_iter().filter(|&k| self.has(k)).collect()
    }

    /// `name=value` for each value held, comma separated ("" when empty).
    pub fn describe(&self) -> String {
        Knob::ALL
            .into_iter()
            .filter_map(|k| self.text(k).map(|v| format!("{}={v}", k.name())))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a tune run optimises (`--target`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Prefill,
    Decode,
    Both,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Prefill => "prefill",
            Target::Decode => "decode",
            Target::Both => "both",
        }
    }
    pub fn prefill(self) -> bool {
        self != Target::Decode
    }
    pub fn decode(self) -> bool {
        self != Target::Prefill
    }
    /// The knobs that matter for this target, in [`Knob::ALL`] order.
    pub fn knobs(self) -> Vec<Knob> {
        Knob::ALL
            .into_iter()
            .filter(|k| (self.prefill() && k.affects_prefill()) || (self.decode() && k.affects_decode()))
            .collect()
    }
}

/// The values each searched knob may take.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub dims: Vec<(Knob, Vec<usize>)>,
}

impl Space {
    /// The space for `target` on a model with `num_heads` heads tuned at prompt length `seq`,
    /// without the `pinned` knobs (fixed by flags). Every list holds `base`'s value, so the
    /// default configuration is always a point of the space.
    pub fn new(target: Target, num_heads: usize, seq: usize, base: &Params, pinned: &[Knob]) -> Space {
        let ctx = SpaceContext { num_heads, seq, base };
        let mut dims = Vec::new();
        for k in target.knobs() {
            if pinned.contains(&k) {
                continue;
            }
            let mut values = k.candidates(&ctx);
            let b = base.canonical(base, num_heads).get(k);
            if !values.contains(&b) {
                values.push(b);
            }
            values.sort_unstable();
            values.dedup();
            if values.len() > 1 {
                dims.push((k, values));
            }
        }
        Space { dims }
    }

    #[cfg(test)]
    pub fn knobs(&self) -> Vec<Knob> {
        self.dims.iter().map(|(k, _)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_library() {
        let p = Params::default();
        let s = p.session_options().unwrap();
        let d = SessionOptions::default();
        assert_eq!(s.schedule, d.schedule);
        assert_eq!(s.submit, d.submit);
        assert_eq!(s.max_segment_tokens, d.max_segment_tokens);
        assert_eq!(s.decode_batch, d.decode_batch);
        assert_eq!(p.gemv_lanes, KernelShapes::default().gemv_lanes);
    }

    #[test]
    fn settings_roundtrip_and_merge() {
        let p = Params {
            prefill: PrefillStrategy::Queued,
            chunk_size: 32,
            gemv_lanes: 32,
            ..Default::default()
        };
        let s = p.settings(&[Knob::Prefill, Knob::ChunkSize]);
        assert_eq!(s.knobs(), vec![Knob::Prefill, Knob::ChunkSize]);
        let q = Params::default().overlay(&s).unwrap();
        assert_eq!(q.prefill, PrefillStrategy::Queued);
        assert_eq!(q.chunk_size, 32);
        assert_eq!(q.gemv_lanes, KernelShapes::default().gemv_lanes);
        let m = s.merged(&p.settings(&[Knob::GemvLanes, Knob::ChunkSize]));
        assert_eq!(m.describe(), "prefill=queued, chunk_size=32, gemv_lanes=32");
    }
}
