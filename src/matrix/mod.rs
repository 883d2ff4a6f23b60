//! Matrix expansion with GitHub Actions `strategy.matrix` semantics, and stable cell ids.
//!
//! 1. The Cartesian product of the axes, first axis outermost, in the file's key order.
//! 2. `exclude` drops every combination that a (partial) entry matches.
//! 3. `include`, applied after: an entry's keys that are not original axes are added to every
//!    combination whose original-axis values the entry matches (added keys may be overwritten by a
//!    later entry, original values never); an entry that matches no original combination is
//!    appended as a new combination.
//!
//! Beyond GitHub: every cell needs all five axes, so a key a combination lacks takes the axis's
//! single value when the matrix lists exactly one, else the built-in default (precision fp32,
//! batch_size 1, seq_len 128, scope model, quantize all, layer_method isolated, the only declared
//! model); identical cells are merged. A float precision has no layers to select (its `quantize`
//! is `all`) and a `model` cell no layer method (`isolated`), so those combinations merge too.
//! Cells whose `quantize = "top:K"` ranks layers by a `layers` cell's profile are planned after
//! every `layers` cell.
//!
//! `id.rs`: a cell's id, which hashes everything that shapes what the cell measures.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{
    toml_key, LayerMethod, LoadedExperiment, MatrixEntry, Precision, PrefillAttention,
    QuantizeSelection, Scope, AXES,
};
use crate::error::ConfigError;
use crate::model::workload::WorkloadKind;
use crate::model::ModelSpec;

mod id;

use id::{cell_id, IdContext};
pub use id::{execution_identity, is_cell_id, same_cells};

/// One measurement to make: a fully resolved combination of the axes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Short hash of everything that determines the measurement (see [`cell_id`]).
    pub id: String,
    pub model: String,
    pub precision: Precision,
    pub batch_size: usize,
    /// An encoder's input length; for a decoder, its prompt length (`prompt_len`).
    pub seq_len: usize,
    /// Decoders: tokens per prompt (the prefill) and greedy tokens generated after it; absent
    /// for encoder cells (so their records and ids are what they were before decoders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<usize>,
    pub scope: Scope,
    /// Which linear layers a quantized precision quantizes; always `all` for float precisions.
    /// Left out of records (and of the id) when `all`, so records and ids from before the axis
    /// existed read and match as they did.
    #[serde(default, skip_serializing_if = "QuantizeSelection::is_all")]
    pub quantize: QuantizeSelection,
    /// How a `layers` cell attributes energy to layers; always `isolated` for `model` cells.
    #[serde(default, skip_serializing_if = "LayerMethod::is_isolated")]
    pub layer_method: LayerMethod,
    /// The runner's own decoder: the prefill's attention this cell runs, `models.NAME.
    /// prefill_attention` resolved for its precision and device (`auto` never stays). Written
    /// only when `flash`, so records from before the key read as the plain prefill they ran.
    #[serde(
        default = "plain_prefill",
        skip_serializing_if = "PrefillAttention::is_plain"
    )]
    pub prefill_attention: PrefillAttention,
}

/// A record without `prefill_attention` ran the plain prefill (the key's default before `auto`).
fn plain_prefill() -> PrefillAttention {
    PrefillAttention::Plain
}

/// Where a plan's cells will run, as far as what they measure depends on it:
/// `prefill_attention = "auto"` is flash on CUDA only, so the ids differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Cuda,
}

/// One axis of a cell and its value, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxisValue {
    /// The axis as experiment files name it (`precision`, `batch_size`, `quantize`, ...).
    pub axis: String,
    /// The value as written in the file (`fp16`, `16`, `blocks:0-5`); `None` where the axis does
    /// not apply to the cell (a float precision selects no layers to quantize, a `model` cell
    /// has no layer method).
    pub value: Option<String>,
    /// The value in a label (`fp16`, `b16`, `quantize=blocks:0-5`); empty when the value needs
    /// no word (a `model`-scope cell beside `layers` cells).
    pub short: String,
}

impl Cell {
    /// Every axis of the cell, in the order of [`AXES`]: the one list that labels, legends,
    /// chart series, table columns and CSV columns are made from, so an axis added here appears
    /// in all of them.
    pub fn axes(&self) -> Vec<AxisValue> {
        let axis = |axis: &str, value: Option<String>, short: String| AxisValue {
            axis: axis.to_string(),
            value,
            short,
        };
        let quantize = self.precision.float_path().map(|_| self.quantize.name());
        let method = (self.scope == Scope::Layers).then(|| self.layer_method.name().to_string());
        // seq_len is an encoder's axis; prompt_len and new_tokens a decoder's.
        let decoder = self.prompt_len.is_some();
        let seq = (!decoder).then(|| self.seq_len.to_string());
        vec![
            axis("model", Some(self.model.clone()), self.model.clone()),
            axis(
                "precision",
                Some(self.precision.name().to_string()),
                self.precision.name().to_string(),
            ),
            axis(
                "batch_size",
                Some(self.batch_size.to_string()),
                format!("b{}", self.batch_size),
            ),
            axis(
                "seq_len",
                seq.clone(),
                seq.map(|s| format!("seq {s}")).unwrap_or_default(),
            ),
            axis(
                "prompt_len",
                self.prompt_len.map(|p| p.to_string()),
                self.prompt_len
                    .map(|p| format!("prompt {p}"))
                    .unwrap_or_default(),
            ),
            axis(
                "new_tokens",
                self.new_tokens.map(|n| n.to_string()),
                self.new_tokens.map(|n| format!("+{n}")).unwrap_or_default(),
            ),
            axis(
                "scope",
                Some(self.scope.name().to_string()),
                match self.scope {
                    Scope::Model => String::new(),
                    Scope::Layers => "layers".into(),
                },
            ),
            axis(
                "quantize",
                quantize.clone(),
                quantize
                    .map(|q| format!("quantize={q}"))
                    .unwrap_or_default(),
            ),
            axis(
                "layer_method",
                method.clone(),
                method.map(|m| format!("method={m}")).unwrap_or_default(),
            ),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub cells: Vec<Cell>,
    /// Combinations that resolved to a cell already in the plan.
    pub merged_duplicates: usize,
}

type Combo = Vec<(String, Value)>;

/// A decoder cell's prompt length and generated tokens when the matrix names none.
pub const DEFAULT_PROMPT_LEN: usize = 128;
pub const DEFAULT_NEW_TOKENS: usize = 128;

/// The most combinations one experiment may expand to (a 10,000-cell sweep fits tenfold).
pub const MAX_COMBINATIONS: usize = 100_000;

fn get<'a>(combo: &'a Combo, key: &str) -> Option<&'a Value> {
    combo.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn set(combo: &mut Combo, key: &str, value: Value) {
    match combo.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => combo.push((key.to_string(), value)),
    }
}

/// How many (include entry, matched combination) pairs one expansion applies at most.
const MAX_INCLUDE_WORK: usize = 10_000_000;

/// The values of `keys` in `combo`, as one comparable string; `None` when it lacks one.
fn project(combo: &Combo, keys: &[String]) -> Option<String> {
    let mut out = String::new();
    for k in keys {
        out.push_str(&get(combo, k)?.to_string());
        out.push('\u{1f}');
    }
    Some(out)
}

fn entry_pairs(e: &MatrixEntry) -> Combo {
    let v = serde_json::to_value(e).expect("matrix entries serialize");
    let obj = v.as_object().expect("a matrix entry is an object");
    // Keep the canonical axis order, so appended combinations print predictably.
    AXES.iter()
        .filter_map(|axis| obj.get(*axis).map(|v| (axis.to_string(), v.clone())))
        .collect()
}

/// Expands the experiment's matrix into the cells that run on `target`.
pub fn expand(exp: &LoadedExperiment, target: Target) -> Result<Plan, ConfigError> {
    let m = &exp.config.matrix;
    let file = exp.file.display();
    let matrix_value = serde_json::to_value(m).expect("the matrix serializes");
    let axes: Vec<(String, Vec<Value>)> = m
        .axis_order
        .iter()
        .filter_map(|axis| {
            matrix_value
                .get(axis)
                .and_then(|v| v.as_array())
                .map(|values| (axis.clone(), values.clone()))
        })
        .collect();
    let original: Vec<&str> = axes.iter().map(|(a, _)| a.as_str()).collect();

    // A hostile or mistyped file must not exhaust memory before any check can speak.
    let product = axes
        .iter()
        .fold(1usize, |n, (_, values)| n.saturating_mul(values.len()));
    // Exclude entries count too: each is matched against the whole product.
    let entries = m.include.len().saturating_add(m.exclude.len());
    if product.saturating_add(entries) > MAX_COMBINATIONS {
        let with = if entries > 0 {
            format!(
                ", with {} include and {} exclude entries,",
                m.include.len(),
                m.exclude.len()
            )
        } else {
            ",".to_string()
        };
        return Err(ConfigError::new(format!(
            "{file}: matrix: the axes multiply to {product} combinations{with} more than the {MAX_COMBINATIONS} one run can plan: split the sweep into several experiment files"
        )));
    }

    // 1. Cartesian product, first axis outermost. No axes at all gives no combinations, as on
    //    GitHub, where a matrix of only `include` entries yields exactly those entries.
    let mut combos: Vec<Combo> = if axes.is_empty() {
        Vec::new()
    } else {
        let mut acc: Vec<Combo> = vec![Vec::new()];
        for (axis, values) in &axes {
            acc = acc
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((axis.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        acc
    };

    // 2. Exclude: partial matches. A key that is not an axis could never match: say so.
    //    Entries are grouped by the keys they name, each group a set of value tuples, so every
    //    combination is looked up once per group instead of compared with every entry.
    let mut problems = Vec::new();
    let mut excluded: HashMap<Vec<String>, HashSet<String>> = HashMap::new();
    for (i, e) in m.exclude.iter().enumerate() {
        let pairs = entry_pairs(e);
        for (k, _) in &pairs {
            if !original.contains(&k.as_str()) {
                problems.push(format!(
                    "{file}: matrix.exclude[{i}].{k}: `{k}` is not an axis of this matrix, so the entry can never match (axes: {})",
                    original.join(", ")
                ));
            }
        }
        let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
        let values = project(&pairs, &keys).expect("an entry has its own keys");
        excluded.entry(keys).or_default().insert(values);
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    combos.retain(|c| {
        !excluded
            .iter()
            .any(|(keys, values)| project(c, keys).is_some_and(|p| values.contains(&p)))
    });

    // 3. Include, against the original combinations only.
    //    An include only sets keys that are not original axes, so what an entry matches never
    //    changes as entries apply: the original combinations are indexed once per set of keys.
    let n_original = combos.len();
    let mut index: HashMap<Vec<String>, HashMap<String, Vec<usize>>> = HashMap::new();
    let mut work = 0usize;
    for (i, e) in m.include.iter().enumerate() {
        let pairs = entry_pairs(e);
        let keys: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| original.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        let by_values = index.entry(keys.clone()).or_insert_with(|| {
            let mut map: HashMap<String, Vec<usize>> = HashMap::new();
            for (n, c) in combos.iter().take(n_original).enumerate() {
                if let Some(p) = project(c, &keys) {
                    map.entry(p).or_default().push(n);
                }
            }
            map
        });
        let wanted = project(&pairs, &keys).expect("an entry has its own keys");
        let matches = by_values.get(&wanted).cloned().unwrap_or_default();
        // Entries that each match most of a large product still cost entries x combinations.
        work = work.saturating_add(matches.len());
        if work > MAX_INCLUDE_WORK {
            return Err(ConfigError::new(format!(
                "{file}: matrix.include[{i}]: the include entries match more than {MAX_INCLUDE_WORK} combinations in all (each entry adds its keys to every combination it matches): name more axes in each entry, or split the sweep"
            )));
        }
        if matches.is_empty() {
            combos.push(pairs);
            continue;
        }
        for n in matches {
            for (k, v) in pairs
                .iter()
                .filter(|(k, _)| !original.contains(&k.as_str()))
            {
                set(&mut combos[n], k, v.clone());
            }
        }
    }

    // 4. Fill the keys a combination lacks, then resolve to typed cells.
    let single_model = (exp.config.models.len() == 1)
        .then(|| exp.config.models.keys().next().cloned())
        .flatten();
    let defaults: BTreeMap<&str, Option<Value>> = [
        ("model", single_model.map(Value::from)),
        ("precision", Some(json!("fp32"))),
        ("batch_size", Some(json!(1))),
        ("seq_len", Some(json!(128))),
        ("prompt_len", Some(json!(DEFAULT_PROMPT_LEN))),
        ("new_tokens", Some(json!(DEFAULT_NEW_TOKENS))),
        ("scope", Some(json!("model"))),
        ("quantize", Some(json!("all"))),
        ("layer_method", Some(json!("isolated"))),
    ]
    .into_iter()
    .collect();
    let specs = model_specs(exp)?;
    let context =
        IdContext::new(exp, target).map_err(|e| ConfigError::new(format!("{file}: {e:#}")))?;

    let mut cells: Vec<Cell> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut merged_duplicates = 0;
    for (n, mut c) in combos.into_iter().enumerate() {
        for axis in AXES {
            if get(&c, axis).is_some() {
                continue;
            }
            let single = axes
                .iter()
                .find(|(a, _)| a == axis)
                .filter(|(_, values)| values.len() == 1)
                .map(|(_, values)| values[0].clone());
            match single.or_else(|| defaults[axis].clone()) {
                Some(v) => set(&mut c, axis, v),
                None => {
                    return Err(ConfigError::new(format!(
                        "{file}: matrix combination #{} has no `{axis}` and there is no single value to default to: name it in the include entry",
                        n + 1
                    )))
                }
            }
        }
        let cell = to_cell(&c, &specs, &context)
            .map_err(|e| ConfigError::new(format!("{file}: matrix combination #{}: {e}", n + 1)))?;
        if !seen.insert(cell.id.clone()) {
            merged_duplicates += 1;
        } else {
            cells.push(cell);
        }
    }
    if cells.is_empty() {
        return Err(ConfigError::new(format!(
            "{file}: the matrix expands to 0 cells (every combination was excluded, or no axis has values)"
        )));
    }
    check_top_sources(&cells, &file.to_string())?;
    // A profile-aimed selection needs its profile measured first: after every layers cell
    // (a stable sort, so all other cells keep their order and a plan without top:K is unchanged).
    cells.sort_by_key(|c| matches!(c.quantize, QuantizeSelection::Top(_)));
    Ok(Plan {
        cells,
        merged_duplicates,
    })
}

fn model_specs(exp: &LoadedExperiment) -> Result<BTreeMap<String, ModelSpec>, ConfigError> {
    exp.config
        .models
        .iter()
        .map(|(name, section)| {
            ModelSpec::resolve(name, section, exp)
                .map(|s| (name.clone(), s))
                .map_err(|e| ConfigError::new(format!("{}: {e:#}", exp.file.display())))
        })
        .collect()
}

fn spec_blocks(specs: &BTreeMap<String, ModelSpec>, model: &str) -> usize {
    specs
        .get(model)
        .and_then(|s| s.encoder())
        .map_or(usize::MAX, |p| p.n_layers)
}

/// Every `top:K` cell needs a `layers` cell to rank by: same model and shapes, in the precision's
/// float path (e.g. fp16 for int8-fp16) or in the precision itself with every layer quantized;
/// and K no more than the layers that have linear layers to quantize.
fn check_top_sources(cells: &[Cell], file: &str) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    for c in cells {
        let QuantizeSelection::Top(k) = c.quantize else {
            continue;
        };
        if ranking_source(c, cells).is_none() {
            problems.push(format!(
                "{file}: matrix.quantize: cell {} ({} {} batch {} seq {}) asks for top:{k} (the {k} layer(s) with the largest energy share), but the plan has no `layers` cell of model {:?} at batch {} seq {} in {} (or in {} with quantize = \"all\") to rank them by: add scope = \"layers\" to the matrix",
                c.id,
                c.model,
                c.precision.name(),
                c.batch_size,
                c.seq_len,
                c.model,
                c.batch_size,
                c.seq_len,
                c.precision.float_path().unwrap_or(c.precision).name(),
                c.precision.name()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// The `layers` cell whose profile ranks a `top:K` cell's layers: the float path's (the energy
/// the quantization is aimed at), else the same precision's with every layer quantized.
pub fn ranking_source<'a>(cell: &Cell, cells: &'a [Cell]) -> Option<&'a Cell> {
    let same_shape = |o: &&Cell| {
        o.scope == Scope::Layers
            && o.model == cell.model
            && o.batch_size == cell.batch_size
            && o.seq_len == cell.seq_len
    };
    let float = cell.precision.float_path()?;
    cells
        .iter()
        .filter(same_shape)
        .find(|o| o.precision == float)
        .or_else(|| {
            cells
                .iter()
                .filter(same_shape)
                .find(|o| o.precision == cell.precision && o.quantize.is_all())
        })
}

fn to_cell(
    c: &Combo,
    specs: &BTreeMap<String, ModelSpec>,
    ctx: &IdContext,
) -> Result<Cell, String> {
    let field = |k: &str| get(c, k).cloned().expect("every axis was filled");
    let model: String = serde_json::from_value(field("model")).map_err(|e| e.to_string())?;
    let precision: Precision =
        serde_json::from_value(field("precision")).map_err(|e| e.to_string())?;
    let batch_size: i64 = serde_json::from_value(field("batch_size")).map_err(|e| e.to_string())?;
    let seq_len: i64 = serde_json::from_value(field("seq_len")).map_err(|e| e.to_string())?;
    let scope: Scope = serde_json::from_value(field("scope")).map_err(|e| e.to_string())?;
    let quantize: QuantizeSelection =
        serde_json::from_value(field("quantize")).map_err(|e| e.to_string())?;
    let layer_method: LayerMethod =
        serde_json::from_value(field("layer_method")).map_err(|e| e.to_string())?;
    // Nothing to select in a float precision, no layer method for a whole-model cell.
    let quantized = precision.float_path().is_some();
    let quantize = if quantized {
        quantize
    } else {
        QuantizeSelection::All
    };
    let layer_method = if scope == Scope::Layers {
        layer_method
    } else {
        LayerMethod::Isolated
    };
    if let Some(block) = quantize.block_out_of_range(spec_blocks(specs, &model)) {
        return Err(format!(
            "quantize = \"{}\" names block {block}, but model {model:?} has {} transformer blocks (0-{})",
            quantize.name(),
            spec_blocks(specs, &model),
            spec_blocks(specs, &model).saturating_sub(1)
        ));
    }
    let spec = specs
        .get(&model)
        .ok_or_else(|| format!("model {model:?} is not declared"))?;
    if batch_size < 1 {
        return Err(format!("batch_size must be >= 1 (got {batch_size})"));
    }
    let max = spec.max_positions() as i64;
    let (seq_len, prompt_len, new_tokens, quantize, layer_method) = match spec.workload() {
        WorkloadKind::Classify => {
            if !(2..=max).contains(&seq_len) {
                return Err(format!(
                    "seq_len = {seq_len} is outside 2..={max} for model {model:?} (its position embeddings)"
                ));
            }
            (seq_len, None, None, quantize, layer_method)
        }
        WorkloadKind::Generate => {
            // seq_len is the encoders' axis; a decoder's input length is its prompt.
            let prompt: i64 =
                serde_json::from_value(field("prompt_len")).map_err(|e| e.to_string())?;
            let new: i64 =
                serde_json::from_value(field("new_tokens")).map_err(|e| e.to_string())?;
            if prompt < 1 || new < 1 {
                return Err(format!(
                    "prompt_len = {prompt}, new_tokens = {new}: a decoder cell needs at least one prompt token and one generated token"
                ));
            }
            if prompt.saturating_add(new) > max {
                return Err(format!(
                    "prompt_len {prompt} + new_tokens {new} = {} exceeds model {model:?}'s context of {max} tokens (max_position_embeddings): shorten the prompt or the generation",
                    prompt + new
                ));
            }
            // Nothing to select in a decoder's linears yet; its layer method as for an encoder
            // (the runner's own decoder profiles its layers both ways).
            let (p, n) = (prompt as usize, new as usize);
            (
                prompt,
                Some(p),
                Some(n),
                QuantizeSelection::All,
                layer_method,
            )
        }
    };
    // Resolved here, before anything is measured, as the model resolves it when it loads.
    let prefill_attention = match spec.decoder() {
        Some(d) => d
            .prefill_attention_for(precision, ctx.target == Target::Cuda)
            .map_err(|why| format!("{}.{why}", toml_key(&["models", &model])))?
            .map_or(PrefillAttention::Plain, |r| r.attention),
        None => PrefillAttention::Plain,
    };
    let mut cell = Cell {
        id: String::new(),
        model,
        precision,
        batch_size: batch_size as usize,
        seq_len: seq_len as usize,
        prompt_len,
        new_tokens,
        scope,
        quantize,
        layer_method,
        prefill_attention,
    };
    cell.id = cell_id(&cell, spec, ctx).map_err(|e| format!("{e:#}"))?;
    Ok(cell)
}
