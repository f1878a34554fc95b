//! The topology as a graph of links (`build`), what it predicts (`analyze`),
//! and how it is drawn (`render`).

pub mod analyze;
pub mod build;
pub mod render;
