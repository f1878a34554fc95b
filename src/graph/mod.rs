//! The topology as a graph of links, and what it predicts.

pub mod glob;
