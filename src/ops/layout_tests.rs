//! Every host `Params` struct against the WGSL `Params` of each kernel it is bound to: member
//! names, byte offsets, scalar types and total size, read from the WGSL through naga. And every
//! shipped kernel has exactly one host mirror.

use super::ParamsField;
use crate::gpu::kernels::{source, SOURCES};

/// (kernels, fields, size) of one host struct.
type Mirror = (&'static [&'static str], &'static [ParamsField], usize);

macro_rules! mirrors {
    ($($t:ty),* $(,)?) => {
        &[$((<$t>::KERNELS, <$t>::FIELDS, std::mem::size_of::<$t>())),*]
    };
}

const MIRRORS: &[Mirror] = mirrors![
    super::elementwise::EmbedParams,
    super::elementwise::SwigluParams,
    super::elementwise::FillParams,
    super::matmul::GemmParams,
    super::matmul::GemvParams,
    super::matmul::GemvHeadNormParams,
    super::matmul::DequantParams,
    super::mlstm_chunk::GatesParams,
    super::mlstm_chunk::ChunkStateParams,
    super::mlstm_chunk::ChunkOutParams,
    super::mlstm_step::StepParams,
    super::norms::RmsNormParams,
    super::norms::HeadNormParams,
    super::sampling::ArgmaxParams,
    super::sampling::SampleParams,
    super::slstm::SeqParams,
    super::slstm::StepParams,
    super::v1::NormParams,
    super::v1::ConvParams,
    super::v1::HeadwiseParams,
    super::v1::GatedParams,
    super::v1::BiasParams,
    super::mlstm_v1::GatesParams,
];

/// The members of `kernel`'s `p` global: (name, offset, type) and the struct's size.
fn wgsl_params(kernel: &str) -> (Vec<(String, usize, String)>, usize) {
    let text = source(kernel).unwrap();
    let module = naga::front::wgsl::parse_str(text).unwrap_or_else(|e| panic!("{kernel}: {}", e.emit_to_string(text)));
    let (_, p) = module
        .global_variables
        .iter()
        .find(|(_, g)| g.name.as_deref() == Some("p"))
        .unwrap_or_else(|| panic!("{kernel}: no `p`"));
    let naga::TypeInner::Struct { members, span } = &module.types[p.ty].inner else {
        panic!("{kernel}: `p` is not a struct");
    };
    let fields = members
        .iter()
        .map(|m| {
            let ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar {
                    kind: naga::ScalarKind::Uint,
                    width: 4,
                }) => "u32",
                naga::TypeInner::Scalar(naga::Scalar {
                    kind: naga::ScalarKind::Float,
                    width: 4,
                }) => "f32",
                ref other => panic!("{kernel}: member {:?} is {other:?}, not u32 or f32", m.name),
            };
            (m.name.clone().unwrap_or_default(), m.offset as usize, ty.to_string())
        })
        .collect();
    (fields, *span as usize)
}

#[test]
fn every_params_struct_matches_its_wgsl() {
    for (kernels, fields, size) in MIRRORS {
        for kernel in *kernels {
            let (wgsl, span) = wgsl_params(kernel);
            let host: Vec<(String, usize, String)> = fields
                .iter()
                .map(|(n, o, t)| (n.to_string(), *o, t.to_string()))
                .collect();
            assert_eq!(host, wgsl, "{kernel}: host Params vs WGSL Params (name, offset, type)");
            assert_eq!(*size, span, "{kernel}: host Params size vs WGSL struct size");
        }
    }
}

#[test]
fn every_kernel_has_one_params_mirror() {
    for k in SOURCES {
        let n = MIRRORS.iter().filter(|(ks, _, _)| ks.contains(&k.name)).count();
        assert_eq!(n, 1, "{}: {n} host Params structs name this kernel", k.name);
    }
}

/// The comparison tells layouts apart: a struct checked against another kernel's `Params` fails.
#[test]
fn a_different_layout_is_told_apart() {
    let host = |fields: &[ParamsField]| -> Vec<(String, usize, String)> {
        fields
            .iter()
            .map(|(n, o, t)| (n.to_string(), *o, t.to_string()))
            .collect()
    };
    assert_ne!(host(super::matmul::GemvParams::FIELDS), wgsl_params("gemm").0);
    assert_eq!(host(super::matmul::GemmParams::FIELDS), wgsl_params("gemm").0);
}
