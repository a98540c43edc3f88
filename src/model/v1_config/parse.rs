//! Parsing the nested block configs of `xLSTMLMModelConfig`, every field range-checked and every
//! error naming its JSON path.

use super::*;

/// Typed accessors over one JSON object, naming the path in every error.
pub(super) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Obj<'a> {
    pub(super) fn new(v: &'a Value, path: &'a str) -> Result<Self> {
        v.as_object()
            .map(|map| Obj { map, path })
            .ok_or_else(|| Error::Config(format!("`{path}` must be an object")))
    }

    pub(super) fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn uint(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| Error::Config(format!("`{}` must be a non-negative integer, got {v}", self.name(key)))),
        }
    }

    pub(super) fn required_uint(&self, key: &str) -> Result<usize> {
        self.uint(key)?
            .ok_or_else(|| Error::Config(format!("missing `{}`", self.name(key))))
    }

    /// An integer where the package uses -1 (or any negative) for "unset".
    pub(super) fn optional_dim(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(x) if x <= 0 => Ok(None),
                Some(x) => Ok(Some(x as usize)),
                None => Err(Error::Config(format!(
                    "`{}` must be an integer, got {v}",
                    self.name(key)
                ))),
            },
        }
    }

    pub(super) fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| Error::Config(format!("`{}` must be a number, got {v}", self.name(key)))),
        }
    }

    pub(super) fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| Error::Config(format!("`{}` must be true or false, got {v}", self.name(key)))),
        }
    }

    pub(super) fn string(&self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| Error::Config(format!("`{}` must be a string, got {v}", self.name(key)))),
        }
    }

    pub(super) fn child(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}

pub(super) fn parse_mlstm(v: &Value, embedding_dim: usize) -> Result<MlstmLayerConfig> {
    let o = Obj::new(v, "mlstm_block.mlstm")?;
    if let Some(e) = o.optional_dim("embedding_dim")? {
        if e != embedding_dim {
            return Err(Error::Config(format!(
                "mlstm_block.mlstm.embedding_dim {e} differs from embedding_dim {embedding_dim}"
            )));
        }
    }
    let num_heads = in_range(
        "mlstm_block.mlstm.num_heads",
        o.uint("num_heads")?.unwrap_or(4),
        limits::MAX_HEADS,
    )?;
    let conv1d_kernel_size = o.uint("conv1d_kernel_size")?.unwrap_or(4);
    if conv1d_kernel_size == 0 {
        return Err(Error::Config(
            "mlstm_block.mlstm.conv1d_kernel_size 0 is not supported (the xlstm package cannot build it either)".into(),
        ));
    }
    in_range(
        "mlstm_block.mlstm.conv1d_kernel_size",
        conv1d_kernel_size,
        limits::MAX_CONV_KERNEL,
    )?;
    let qkv_proj_blocksize = in_range(
        "mlstm_block.mlstm.qkv_proj_blocksize",
        o.uint("qkv_proj_blocksize")?.unwrap_or(4),
        limits::MAX_MULTIPLE,
    )?;
    let proj_factor = o.float("proj_factor", 2.0)?;
    if !(proj_factor.is_finite() && proj_factor > 0.0) {
        return Err(Error::Config(format!(
            "mlstm_block.mlstm.proj_factor must be positive, got {proj_factor}"
        )));
    }
    let round_proj_up_dim_up = o.boolean("round_proj_up_dim_up", true)?;
    let multiple = in_range(
        "mlstm_block.mlstm.round_proj_up_to_multiple_of",
        o.uint("round_proj_up_to_multiple_of")?.unwrap_or(64),
        limits::MAX_MULTIPLE,
    )?;
    let inner_dim = proj_up_dim(proj_factor, embedding_dim, round_proj_up_dim_up, multiple);
    for key in ["_inner_embedding_dim", "_proj_up_dim"] {
        if let Some(dumped) = o.optional_dim(key)? {
            if dumped != inner_dim {
                return Err(Error::Config(format!(
                    "mlstm_block.mlstm.{key} is {dumped} but proj_factor {proj_factor} x embedding_dim {embedding_dim} \
                     rounded to a multiple of {multiple} gives {inner_dim}"
                )));
            }
        }
    }
    if inner_dim == 0 {
        return Err(Error::Config("the mLSTM inner dimension rounds to 0".into()));
    }
    in_range(
        "mLSTM inner dimension (proj_factor x embedding_dim)",
        inner_dim,
        limits::MAX_WIDTH,
    )?;
    if !inner_dim.is_multiple_of(num_heads) {
        return Err(Error::Config(format!(
            "mLSTM inner dimension {inner_dim} is not divisible by mlstm num_heads {num_heads}"
        )));
    }
    if !inner_dim.is_multiple_of(qkv_proj_blocksize) {
        return Err(Error::Config(format!(
            "mLSTM inner dimension {inner_dim} is not divisible by qkv_proj_blocksize {qkv_proj_blocksize}"
        )));
    }
    Ok(MlstmLayerConfig {
        num_heads,
        conv1d_kernel_size,
        qkv_proj_blocksize,
        proj_factor,
        round_proj_up_dim_up,
        round_proj_up_to_multiple_of: multiple,
        inner_dim,
    })
}

pub(super) fn parse_slstm(v: &Value, embedding_dim: usize) -> Result<SlstmLayerConfig> {
    let o = Obj::new(v, "slstm_block.slstm")?;
    for key in ["embedding_dim", "hidden_size"] {
        if let Some(e) = o.optional_dim(key)? {
            if e != embedding_dim {
                return Err(Error::Config(format!(
                    "slstm_block.slstm.{key} {e} differs from embedding_dim {embedding_dim}"
                )));
            }
        }
    }
    let function = o.string("function", "slstm")?;
    if function != "slstm" {
        return Err(Error::Config(format!(
            "slstm_block.slstm.function `{function}` is not supported (only \"slstm\")"
        )));
    }
    for (key, want) in [("num_gates", 4), ("num_states", 4)] {
        if let Some(x) = o.uint(key)? {
            if x != want {
                return Err(Error::Config(format!(
                    "slstm_block.slstm.{key} must be {want}, got {x}"
                )));
            }
        }
    }
    let backend = match o.string("backend", "cuda")? {
        "vanilla" => SlstmBackend::Vanilla,
        "cuda" => SlstmBackend::Cuda,
        other => {
            return Err(Error::Config(format!(
                "unknown slstm_block.slstm.backend `{other}` (expected \"vanilla\" or \"cuda\")"
            )))
        }
    };
    // The package turns num_heads <= 0 into 1 (sLSTMCellConfig.__post_init__).
    let num_heads = match o.get("num_heads") {
        None => 4,
        Some(v) => match v.as_i64() {
            Some(x) if x <= 0 => 1,
            Some(x) => in_range(
                "slstm_block.slstm.num_heads",
                usize::try_from(x).unwrap_or(usize::MAX),
                limits::MAX_HEADS,
            )?,
            None => {
                return Err(Error::Config(format!(
                    "`slstm_block.slstm.num_heads` must be an integer, got {v}"
                )))
            }
        },
    };
    if !embedding_dim.is_multiple_of(num_heads) {
        return Err(Error::Config(format!(
            "embedding_dim {embedding_dim} is not divisible by slstm num_heads {num_heads}"
        )));
    }
    Ok(SlstmLayerConfig {
        num_heads,
        head_dim: embedding_dim / num_heads,
        conv1d_kernel_size: slstm_conv_kernel(o.uint("conv1d_kernel_size")?.unwrap_or(4))?,
        backend,
        group_norm_weight: o.boolean("group_norm_weight", true)?,
    })
}

/// The sLSTM conv width: 0 (no convolution) up to [`limits::MAX_CONV_KERNEL`].
pub(super) fn slstm_conv_kernel(size: usize) -> Result<usize> {
    if size > limits::MAX_CONV_KERNEL {
        return Err(Error::Config(format!(
            "`slstm_block.slstm.conv1d_kernel_size` must be at most {}, got {size}",
            limits::MAX_CONV_KERNEL
        )));
    }
    Ok(size)
}

pub(super) fn parse_feedforward(v: &Value, embedding_dim: usize) -> Result<FeedForwardConfig> {
    let o = Obj::new(v, "slstm_block.feedforward")?;
    let ff_type = o.string("ff_type", "ffn_gated")?;
    if ff_type != "ffn_gated" {
        return Err(Error::Config(format!(
            "unknown slstm_block.feedforward.ff_type `{ff_type}` (only \"ffn_gated\")"
        )));
    }
    let proj_factor = o.float("proj_factor", 1.3)?;
    if !(proj_factor.is_finite() && proj_factor > 0.0) {
        return Err(Error::Config(format!(
            "slstm_block.feedforward.proj_factor must be positive, got {proj_factor}"
        )));
    }
    let round_proj_up_dim_up = o.boolean("round_proj_up_dim_up", true)?;
    let multiple = in_range(
        "slstm_block.feedforward.round_proj_up_to_multiple_of",
        o.uint("round_proj_up_to_multiple_of")?.unwrap_or(64),
        limits::MAX_MULTIPLE,
    )?;
    let nominal_dim = proj_up_dim(proj_factor, embedding_dim, round_proj_up_dim_up, multiple);
    if nominal_dim == 0 {
        return Err(Error::Config("the feed-forward width rounds to 0".into()));
    }
    in_range(
        "feed-forward width (proj_factor x embedding_dim)",
        nominal_dim,
        limits::MAX_WIDTH,
    )?;
    Ok(FeedForwardConfig {
        proj_factor,
        round_proj_up_dim_up,
        round_proj_up_to_multiple_of: multiple,
        act_fn: Activation::parse(o.string("act_fn", "gelu")?)?,
        bias: o.boolean("bias", false)?,
        nominal_dim,
    })
}
