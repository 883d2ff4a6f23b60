//! `runner`: TOML experiment files in, trustworthy latency/energy measurements and reports out.
//!
//! The modules follow the data flow: config -> matrix -> (model, data) -> measure (with a sensor)
//! -> results -> analysis -> report. `sweep` drives one run; `cli` parses the command line.

pub mod config;
pub mod error;
pub mod model;
pub mod data;
pub mod device;
pub mod matrix;
pub mod measure;
pub mod sensor;
