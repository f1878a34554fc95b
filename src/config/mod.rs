//! Loading a topology file: YAML with positions (`yaml`), the file's shape
//! (`spec`), and the compile step to a validated `model::Topology`.

pub mod address;
pub mod compile;
pub mod decode;
pub mod diagnostic;
pub mod expect;
pub mod interpolate;
pub mod keys;
pub mod limits;
pub mod read;
pub mod sharding;
pub mod spec;
pub mod yaml;
