//! A GGUF file checked before candle reads it: the header walked with bounds on every count and
//! length, each tensor's type, dimensions and data checked against the file, so a truncated
//! download, a wrong file, a tensor type candle cannot run or absurd dimensions get a message
//! naming the file and the tensor, before any model is built (candle's reader then loads it).

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

const MAGIC: u32 = 0x4655_4747; // "GGUF", little-endian
/// Bounds no real file comes near (llama.cpp's own files hold a few thousand tensors and a
/// vocabulary of a few hundred thousand strings).
const MAX_COUNT: u64 = 1 << 24;
const MAX_STRING: u64 = 1 << 24;
const MAX_DIMS: u32 = 4;
const MAX_ELEMENTS: u64 = 1 << 40;

/// The GGML tensor types by id, with whether candle 0.11 reads them (`GgmlDType::from_u32`).
const TYPES: [(u32, &str, bool); 30] = [
    (0, "f32", true),
    (1, "f16", true),
    (2, "q4_0", true),
    (3, "q4_1", true),
    (6, "q5_0", true),
    (7, "q5_1", true),
    (8, "q8_0", true),
    (9, "q8_1", true),
    (10, "q2k", true),
    (11, "q3k", true),
    (12, "q4k", true),
    (13, "q5k", true),
    (14, "q6k", true),
    (15, "q8k", true),
    (16, "iq2_xxs", false),
    (17, "iq2_xs", false),
    (18, "iq3_xxs", false),
    (19, "iq1_s", false),
    (20, "iq4_nl", false),
    (21, "iq3_s", false),
    (22, "iq2_s", false),
    (23, "iq4_xs", false),
    (24, "i8", false),
    (25, "i16", false),
    (26, "i32", false),
    (27, "i64", false),
    (28, "f64", false),
    (29, "iq1_m", false),
    (30, "bf16", true),
    (39, "mxfp4", false),
];

/// The name of a GGML type id (`"type 77"` for an id no GGML version defines).
pub fn type_name(id: u32) -> String {
    TYPES
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, n, _)| n.to_string())
        .unwrap_or_else(|| format!("type {id}"))
}

/// candle's type for a GGML type id it reads.
pub fn ggml_dtype(id: u32) -> Option<candle_core::quantized::GgmlDType> {
    use candle_core::quantized::GgmlDType as G;
    Some(match id {
        0 => G::F32,
        1 => G::F16,
        2 => G::Q4_0,
        3 => G::Q4_1,
        6 => G::Q5_0,
        7 => G::Q5_1,
        8 => G::Q8_0,
        9 => G::Q8_1,
        10 => G::Q2K,
        11 => G::Q3K,
        12 => G::Q4K,
        13 => G::Q5K,
        14 => G::Q6K,
        15 => G::Q8K,
        30 => G::BF16,
        _ => return None,
    })
}

/// One tensor as the header lists it: dimensions innermost first, as GGUF stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorHeader {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub bytes: u64,
}

/// What the header says, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    pub version: u32,
    pub tensors: Vec<TensorHeader>,
    pub file_bytes: u64,
}

/// Walks and checks the whole header of `path` and every tensor's extent in it.
pub fn check(path: &Path) -> Result<Checked> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_bytes = file.metadata()?.len();
    let mut r = Reader {
        inner: BufReader::new(file),
        at: 0,
        len: file_bytes,
        path,
    };
    let magic = r.u32()?;
    if magic != MAGIC {
        bail!(
            "{}: not a GGUF file (it starts with {:02x?}, a GGUF file with \"GGUF\")",
            path.display(),
            magic.to_le_bytes()
        );
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        bail!(
            "{}: GGUF version {version}; candle reads versions 2 and 3",
            path.display()
        );
    }
    let tensor_count = r.count("tensor count")?;
    let kv_count = r.count("metadata count")?;
    let mut alignment = 32u64;
    for _ in 0..kv_count {
        let key = r.string()?;
        let kind = r.u32()?;
        if key == "general.alignment" && kind == 4 {
            alignment = u64::from(r.u32()?);
            if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 16 {
                bail!(
                    "{}: general.alignment = {alignment} is not a small power of two",
                    path.display()
                );
            }
        } else {
            r.skip_value(kind, &key)?;
        }
    }
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut offsets = Vec::with_capacity(tensor_count as usize);
    for _ in 0..tensor_count {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            bail!(
                "{}: tensor {name} has {n_dims} dimensions (GGML tensors have 1 to {MAX_DIMS})",
                path.display()
            );
        }
        let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
        let type_id = r.u32()?;
        let offset = r.u64()?;
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if dims.contains(&0) || elements.is_none_or(|n| n > MAX_ELEMENTS) {
            bail!(
                "{}: tensor {name} has absurd dimensions {dims:?} (a corrupt file: no model tensor has more than {MAX_ELEMENTS} elements)",
                path.display()
            );
        }
        let elements = elements.expect("checked above");
        let Some((_, type_name, readable)) = TYPES.iter().find(|(i, _, _)| *i == type_id) else {
            bail!("{}: tensor {name} has GGML type {type_id}, which no GGML version defines (a corrupt file)", path.display());
        };
        if !readable {
            bail!(
                "{}: tensor {name} is stored as {type_name}, which candle cannot run; re-export the model with one of f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2k, q3k, q4k, q5k, q6k",
                path.display()
            );
        }
        let ggml = ggml_dtype(type_id).expect("readable types are candle's");
        let block = ggml.block_size() as u64;
        if dims[0] % block != 0 {
            bail!(
                "{}: tensor {name}'s rows of {} values are not whole {type_name} blocks of {block}",
                path.display(),
                dims[0]
            );
        }
        let bytes = elements / block * ggml.type_size() as u64;
        tensors.push(TensorHeader {
            name,
            dims,
            type_id,
            bytes,
        });
        offsets.push(offset);
    }
    let data_start = r.at.next_multiple_of(alignment);
    for (t, offset) in tensors.iter().zip(offsets) {
        let end = data_start
            .checked_add(offset)
            .and_then(|s| s.checked_add(t.bytes));
        match end {
            Some(end) if end <= file_bytes => {}
            _ => bail!(
                "{}: truncated: tensor {} needs bytes up to {} but the file has {file_bytes} (an interrupted download? fetch it again)",
                path.display(),
                t.name,
                end.map_or("beyond 2^64".to_string(), |e| e.to_string())
            ),
        }
    }
    Ok(Checked {
        version,
        tensors,
        file_bytes,
    })
}

struct Reader<'p> {
    inner: BufReader<std::fs::File>,
    at: u64,
    len: u64,
    path: &'p Path,
}

impl Reader<'_> {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if self.at.saturating_add(n) > self.len {
            bail!(
                "{}: truncated in the header (it needs byte {} of a file of {} bytes: an interrupted download? fetch it again)",
                self.path.display(),
                self.at.saturating_add(n),
                self.len
            );
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf)?;
        self.at += n;
        Ok(buf)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        if self.at.saturating_add(n) > self.len {
            return self.bytes(n).map(|_| ());
        }
        self.inner.seek(SeekFrom::Current(n as i64))?;
        self.at += n;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn count(&mut self, what: &str) -> Result<u64> {
        let n = self.u64()?;
        if n > MAX_COUNT {
            bail!(
                "{}: {what} {n} is absurd (a corrupt file)",
                self.path.display()
            );
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > MAX_STRING {
            bail!(
                "{}: a string of {n} bytes in the header (a corrupt file)",
                self.path.display()
            );
        }
        Ok(String::from_utf8_lossy(&self.bytes(n)?).into_owned())
    }

    fn skip_value(&mut self, kind: u32, key: &str) -> Result<()> {
        let fixed = |k: u32| match k {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match kind {
            8 => self.string().map(|_| ()),
            9 => {
                let inner = self.u32()?;
                let n = self.count(&format!("array length of {key}"))?;
                match (inner, fixed(inner)) {
                    (_, Some(size)) => self.skip(n * size),
                    (8, None) => (0..n).try_for_each(|_| self.string().map(|_| ())),
                    _ => bail!("{}: metadata {key} is an array of type {inner}, which GGUF does not define", self.path.display()),
                }
            }
            k => match fixed(k) {
                Some(size) => self.skip(size),
                None => bail!("{}: metadata {key} has value type {k}, which GGUF does not define (a corrupt file)", self.path.display()),
            },
        }
    }
}
