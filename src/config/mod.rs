//! Experiment files: what a file may say, how its layers combine, and whether its values hold,
//! all before any model, dataset or device is touched.
//!
//! Layers, lowest first: built-in defaults (the `Default` impls of the schema) < the experiment
//! file < `RUNNER_SECTION__KEY` environment variables < `--set key=value` overrides. Every value
//! is checked here, and each problem names the file (line and column) or override and the key.
//!
//! - `schema/`: the serde structs, precisions, scopes and the loaded experiment
//! - `presets.rs`: the named architecture presets (the shapes of published checkpoints) a file
//!   may name; they live here because validation needs them (known names, position embeddings
//!   against `seq_len`), and `model` builds from them
//! - `load.rs`: figment layering, environment variables, and where each value came from
//! - `set_override.rs`: `--set KEY=VALUE`, its key a TOML key path (quoted names keep their dots)
//! - `validate/`: every value checked, all problems reported at once (one file per section)
//! - `quantize.rs`: the `quantize` and `layer_method` axes' values
//! - `suggest.rs`: key paths as users write them, "did you mean"
//!
//! May import: `error` only. Everything else imports this.

mod load;
mod precision;
pub mod presets;
mod quantize;
mod schema;
mod set_override;
mod suggest;
mod validate;

pub use load::{load, load_text};
pub use precision::*;
pub use presets::Preset;
pub use quantize::{LayerIsolation, LayerMethod, QuantizeSelection, QUANTIZE_FORMS};
pub use schema::*;
pub use suggest::{did_you_mean, toml_key};
pub use validate::{assert_runnable, MAX_REPEATS};
