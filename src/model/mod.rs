//! Model definitions: configuration, checkpoint reading, and the GPU model graph.

pub mod config;
