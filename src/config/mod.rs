//! Loading a topology file: YAML with positions, the spec, the compile step.

pub mod yaml;
