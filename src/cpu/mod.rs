//! Plain f32 CPU reference (being written).
