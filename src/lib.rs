//! `runner`: TOML experiment files in, trustworthy latency/energy measurements and reports out.
//!
//! The modules follow the data flow: config -> matrix -> (model, data) -> measure (with a sensor)
//! -> results -> analysis -> report. `sweep` drives one run; `cli` parses the command line.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod fidelity;
pub mod interrupt;
pub mod matrix;
pub mod measure;
pub mod model;
pub mod probe;
pub mod report;
pub mod results;
pub mod sensor;
pub mod slurm;
pub mod stats;
pub mod sweep;
pub mod workers;
