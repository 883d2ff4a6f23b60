//! Two matrix axes of per-layer work: which linear layers a quantized precision quantizes
//! (`quantize`), and how a `layers` cell attributes energy to layers (`layer_method`); and
//! the state an isolated unit's weights are in (`protocol.layer_isolation`).

use serde::{Deserialize, Serialize};

/// Which linear layers of a quantized precision (`q8_0`, `int8-fp16`, ...) take the quantized
/// numerics; every other linear layer stays in the precision's float path. Float precisions have
/// nothing to select: their cells always carry the default, `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QuantizeSelection {
    /// No layer quantized: the float path, measured as a cell of the quantized precision.
    None,
    /// Every linear layer (the precision as it always was).
    #[default]
    All,
    /// The feed-forward networks (lin1, lin2) of every transformer block.
    Ffn,
    /// The attention projections (query, key, value, output) of every transformer block.
    Attention,
    /// Every linear layer of transformer blocks `first..=last` (0-based).
    Blocks(usize, usize),
    /// The `k` top-level layers with the largest energy share (latency share where energy is not
    /// measured) in this experiment's `layers` cell of the same model and shapes.
    Top(usize),
}

/// The selections a user may write, for messages.
pub const QUANTIZE_FORMS: &str = "none, all, ffn, attention, blocks:A-B (e.g. blocks:0-2), top:K";

impl QuantizeSelection {
    pub fn is_all(&self) -> bool {
        *self == Self::All
    }

    /// The text a user writes (and records hold).
    pub fn name(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::All => "all".into(),
            Self::Ffn => "ffn".into(),
            Self::Attention => "attention".into(),
            Self::Blocks(a, b) => format!("blocks:{a}-{b}"),
            Self::Top(k) => format!("top:{k}"),
        }
    }

    /// Parses a selection; the error says what is wrong with it and what would be right.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t {
            "none" => return Ok(Self::None),
            "all" => return Ok(Self::All),
            "ffn" => return Ok(Self::Ffn),
            "attention" => return Ok(Self::Attention),
            _ => {}
        }
        let number = |s: &str, what: &str| {
            s.trim().parse::<usize>().map_err(|_| {
                format!("{text:?}: {what} {s:?} is not a whole number >= 0; expected one of: {QUANTIZE_FORMS}")
            })
        };
        if let Some(range) = t.strip_prefix("blocks:") {
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (number(a, "block")?, number(b, "block")?),
                None => {
                    let a = number(range, "block")?;
                    (a, a)
                }
            };
            if a > b {
                return Err(format!(
                    "{text:?}: the range runs backwards (block {a} to block {b}): write blocks:{b}-{a}"
                ));
            }
            return Ok(Self::Blocks(a, b));
        }
        if let Some(k) = t.strip_prefix("top:") {
            let k = number(k, "count")?;
            if k == 0 {
                return Err(format!(
                    "{text:?}: top:0 selects no layer; write \"none\" for that, or top:K with K >= 1"
                ));
            }
            return Ok(Self::Top(k));
        }
        let words = ["none", "all", "ffn", "attention", "blocks:", "top:"];
        Err(format!(
            "unknown selection {text:?}{}; expected one of: {QUANTIZE_FORMS}",
            super::did_you_mean(t, words.into_iter())
        ))
    }

    /// The transformer blocks it names beyond a model of `n_blocks`, if any (for validation).
    pub fn block_out_of_range(&self, n_blocks: usize) -> Option<usize> {
        match *self {
            Self::Blocks(_, b) if b >= n_blocks => Some(b),
            _ => None,
        }
    }
}

impl Serialize for QuantizeSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for QuantizeSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How a `layers` cell measures each layer's share.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LayerMethod {
    /// Each layer (and block component) alone on its captured input, K calls per synchronize so
    /// that a loop lasts as long as a whole forward pass.
    #[default]
    Isolated,
    /// The prefixes embeddings, + block 0, ..., the whole model, each through the full protocol;
    /// a layer is the difference of consecutive prefixes (Σ telescopes to the whole model).
    Prefix,
    /// Both, side by side, with the layers where they disagree beyond their intervals flagged.
    Both,
}

impl LayerMethod {
    pub fn is_isolated(&self) -> bool {
        *self == Self::Isolated
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Isolated => "isolated",
            Self::Prefix => "prefix",
            Self::Both => "both",
        }
    }

    pub fn isolated(self) -> bool {
        matches!(self, Self::Isolated | Self::Both)
    }

    pub fn prefix(self) -> bool {
        matches!(self, Self::Prefix | Self::Both)
    }
}

/// `protocol.layer_isolation`: what an isolated unit of a decoder's `layers` cell reads its
/// weights (and KV cache) from across its K calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerIsolation {
    /// The same weights every call: a unit smaller than the device's cache reads them from the
    /// cache from its second call on (what every run before this key measured).
    Warm,
    /// Each call reads one of C deep copies of the unit's weights and KV cache, in turn, with
    /// C x the unit's bytes > 2x the device's last-level cache (the GPU's L2, read from the
    /// device), so that a call finds nothing of its copy in the cache, as the unit finds it in a
    /// whole step, where the other layers and the head stream through the cache between two of
    /// its reads.
    Cold,
    /// Cold, and each top-level unit of the step (embeddings, each block, the head) runs after
    /// the unit that precedes it in the step (the head before the embeddings: the previous
    /// step's), the pair K times a loop; the unit's figure is the pair's loop less its
    /// predecessor's own loop, measured alone with the same K. A unit costs more after another
    /// unit than after itself (H100, session 8: the head 11 us more after a block than after a
    /// head, a block ~4.5 us more after a block), which no unit alone pays.
    #[serde(rename = "in-step")]
    InStep,
}

impl LayerIsolation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Warm => "warm",
            Self::Cold => "cold",
            Self::InStep => "in-step",
        }
    }

    /// Whether units read rotating copies (`cold` and `in-step`).
    pub fn is_cold(self) -> bool {
        matches!(self, Self::Cold | Self::InStep)
    }

    /// Whether top-level units run after their step predecessor (`in-step`).
    pub fn in_step(self) -> bool {
        self == Self::InStep
    }

    /// What a decoder's layers cell runs when the key is not set.
    pub fn decoder_default() -> Self {
        Self::Warm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_print_and_refuse_what_cannot_be_meant() {
        for (text, want) in [
            ("none", QuantizeSelection::None),
            ("all", QuantizeSelection::All),
            ("ffn", QuantizeSelection::Ffn),
            ("attention", QuantizeSelection::Attention),
            ("blocks:0-2", QuantizeSelection::Blocks(0, 2)),
            ("blocks:3", QuantizeSelection::Blocks(3, 3)),
            ("top:3", QuantizeSelection::Top(3)),
        ] {
            assert_eq!(QuantizeSelection::parse(text), Ok(want), "{text}");
        }
        assert_eq!(QuantizeSelection::Blocks(3, 3).name(), "blocks:3-3");
        assert_eq!(QuantizeSelection::Top(3).name(), "top:3");
        let err = |t: &str| QuantizeSelection::parse(t).unwrap_err();
        assert!(
            err("blocks:5-2").contains("backwards"),
            "{}",
            err("blocks:5-2")
        );
        assert!(err("top:0").contains("top:0 selects no layer"));
        assert!(err("top:x").contains("not a whole number"));
        assert!(
            err("atention").contains("did you mean `attention`?"),
            "{}",
            err("atention")
        );
        assert!(err("everything").contains("expected one of: none, all"));
        assert_eq!(
            QuantizeSelection::Blocks(0, 99).block_out_of_range(6),
            Some(99)
        );
        assert_eq!(QuantizeSelection::Blocks(0, 5).block_out_of_range(6), None);
    }
}
