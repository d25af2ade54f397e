//! PyTorch `.pth` files, both formats, read without executing anything:
//!
//! - the zip format of PyTorch >= 1.6: `ROOT/data.pkl` (the pickled state dict; tensors
//!   refer to storages by key) and one stored entry `ROOT/data/KEY` per storage;
//! - the legacy format (before 1.6, as in the 2017 torchvision checkpoints such as
//!   `vgg16-397923af.pth`): a magic number, a protocol version, a system-info dict, the
//!   pickled object, the list of storage keys, then each storage's element count (8 bytes)
//!   and raw data.
//!
//! The pickles are parsed by candle's restricted unpickler, which builds a value tree and
//! executes nothing; this module interprets the tree itself (tensors are recognised by the
//! names of their rebuild functions), checking every size, offset and stride against the
//! storage it reads, so a crafted file is an error and never a panic or a huge allocation.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek};

use candle_core::pickle::{Object, Stack};
use candle_core::{Device, Tensor};

use crate::error::Result;

/// The first bytes of a legacy file: protocol 2, then the magic number
/// 0x1950a86a20f9469cfc6c as a 10-byte LONG1, then STOP.
pub const MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

pub fn is_legacy(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

type Fail = String;

/// Walks one pickle's op codes (those candle's unpickler reads) up to its STOP, checking
/// that every argument, and every length-prefixed string, lies in `b`. An op code it does
/// not know ends the walk (the unpickler refuses it too).
fn check_lengths(b: &[u8]) -> std::result::Result<(), Fail> {
    let mut i = 0usize;
    let short = |what: &str, need: usize, at: usize| {
        format!(
            "a {what} of {need} bytes at byte {at} runs past the pickle's {} bytes",
            b.len()
        )
    };
    while let Some(&op) = b.get(i) {
        i += 1;
        let fixed = match op {
            b'.' => return Ok(()),
            0x80 | b'q' | b'K' | b'h' => 1,
            b'M' => 2,
            b'r' | b'J' | b'j' => 4,
            b'G' => 8,
            b')' | b'R' | b'(' | b't' | b'Q' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's'
            | b'u' | b'}' | b'd' | b'b' | 0x81 | b']' | b'a' | b'e' => 0,
            b'c' => {
                // two lines: module and class names
                for _ in 0..2 {
                    let nl = b
                        .get(i..)
                        .and_then(|r| r.iter().position(|&c| c == b'\n'))
                        .ok_or_else(|| short("name", 1, i))?;
                    i += nl + 1;
                }
                continue;
            }
            b'X' => {
                let len = b
                    .get(i..i + 4)
                    .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                    .ok_or_else(|| short("string length", 4, i))?;
                4 + len
            }
            0x8a => 1 + usize::from(*b.get(i).ok_or_else(|| short("integer length", 1, i))?),
            _ => return Ok(()),
        };
        if i.checked_add(fixed).is_none_or(|end| end > b.len()) {
            return Err(short("argument", fixed, i));
        }
        i += fixed;
    }
    Ok(())
}

/// Reads one pickle at the cursor's position, after [`check_lengths`] says its
/// length-prefixed arguments fit in the bytes there (candle's unpickler allocates a string's
/// declared length before it reads it: four crafted bytes would ask for 4 GB).
fn pickle(r: &mut Cursor<&[u8]>, what: &str) -> std::result::Result<Object, Fail> {
    let rest = r.get_ref().get(r.position() as usize..).unwrap_or(&[]);
    check_lengths(rest).map_err(|e| format!("{what}: {e}"))?;
    let mut s = Stack::empty();
    s.read_loop(r)
        .map_err(|e| format!("{what}: not a readable pickle ({e})"))?;
    s.finalize().map_err(|e| format!("{what}: {e}"))
}

/// A tensor as the pickle describes it.
struct TensorRef {
    key: String,
    dtype: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn ints(o: Object, what: &str) -> std::result::Result<Vec<usize>, Fail> {
    match o {
        Object::Tuple(v) | Object::List(v) => v
            .into_iter()
            .map(|x| match x {
                Object::Int(i) if i >= 0 => Ok(i as usize),
                Object::Long(i) if i >= 0 => Ok(i as usize),
                other => Err(format!("{what}: {} is not a size", short_debug(&other))),
            })
            .collect(),
        other => Err(format!("{what}: {} is not a tuple", short_debug(&other))),
    }
}

fn int(o: &Object) -> Option<usize> {
    match o {
        Object::Int(i) if *i >= 0 => Some(*i as usize),
        Object::Long(i) if *i >= 0 => Some(*i as usize),
        _ => None,
    }
}

/// `_rebuild_tensor(storage, offset, size, stride)` (PyTorch < 0.4) or
/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`, possibly
/// wrapped in `_rebuild_parameter(tensor, requires_grad, hooks)`.
fn tensor_ref(o: Object, name: &str) -> std::result::Result<Option<TensorRef>, Fail> {
    let Object::Reduce { callable, args } = o else {
        return Ok(None);
    };
    let Object::Class {
        module_name,
        class_name,
    } = *callable
    else {
        return Ok(None);
    };
    let Object::Tuple(mut args) = *args else {
        return Ok(None);
    };
    match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_parameter") if !args.is_empty() => {
            tensor_ref(args.remove(0), name)
        }
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") if args.len() >= 4 => {
            let stride = ints(args.remove(3), name)?;
            let size = ints(args.remove(2), name)?;
            let offset = int(&args[1]).ok_or_else(|| format!("{name}: bad storage offset"))?;
            let Object::PersistentLoad(id) = args.remove(0) else {
                return Err(format!("{name}: the storage is not a persistent id"));
            };
            // ('storage', storage_type, key, location, size[, view_metadata])
            let Object::Tuple(id) = *id else {
                return Err(format!("{name}: bad storage id"));
            };
            let (dtype, key) = match (id.get(1), id.get(2)) {
                (Some(Object::Class { class_name, .. }), Some(Object::Unicode(k))) => {
                    (class_name.clone(), k.clone())
                }
                _ => return Err(format!("{name}: bad storage id ({} items)", id.len())),
            };
            Ok(Some(TensorRef {
                key,
                dtype,
                offset,
                size,
                stride,
            }))
        }
        _ => Ok(None),
    }
}

fn elem_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "FloatStorage" => 4,
        "DoubleStorage" => 8,
        "HalfStorage" | "BFloat16Storage" => 2,
        "LongStorage" => 8,
        "IntStorage" => 4,
        "ByteStorage" | "CharStorage" | "BoolStorage" => 1,
        _ => return None,
    })
}

/// The tensors a saved object holds: a state dict, a checkpoint dict with one under
/// `state_dict`, or an `OrderedDict` built from a list of pairs.
fn tensor_refs(mut obj: Object) -> std::result::Result<Vec<(String, TensorRef)>, Fail> {
    if let Object::Dict(kv) = &obj {
        if let Some((_, v)) = kv
            .iter()
            .find(|(k, _)| *k == Object::Unicode("state_dict".into()))
        {
            obj = v.clone();
        }
    }
    let entries = match obj {
        Object::Dict(kv) => kv,
        // collections.OrderedDict() built from a list of pairs
        Object::Reduce { args, .. } => match *args {
            Object::Tuple(mut a) if !a.is_empty() => match a.remove(0) {
                Object::List(pairs) => pairs
                    .into_iter()
                    .filter_map(|p| match p {
                        Object::Tuple(mut kv) if kv.len() == 2 => {
                            let v = kv.pop()?;
                            Some((kv.pop()?, v))
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        // a state dict whose items are set by BUILD (as PyTorch >= 1.6 pickles OrderedDict)
        Object::Build { args, .. } => match *args {
            Object::Dict(kv) => kv,
            _ => Vec::new(),
        },
        other => {
            return Err(format!(
                "the saved object is not a dict of tensors ({})",
                short_debug(&other)
            ))
        }
    };
    let mut refs = Vec::new();
    for (k, v) in entries {
        let Object::Unicode(name) = k else { continue };
        if let Some(t) = tensor_ref(v, &name)? {
            refs.push((name, t));
        }
    }
    Ok(refs)
}

/// An object's kind for error messages (its debug form could be as deep and as long as the
/// file).
fn short_debug(o: &Object) -> String {
    match o {
        Object::Dict(v) => format!("a dict of {} items", v.len()),
        Object::List(v) => format!("a list of {} items", v.len()),
        Object::Tuple(v) => format!("a tuple of {} items", v.len()),
        Object::Unicode(s) => format!("the string {:?}", s.chars().take(60).collect::<String>()),
        Object::Int(i) => format!("the integer {i}"),
        Object::Long(i) => format!("the integer {i}"),
        Object::Class {
            module_name,
            class_name,
        } => format!("the class {module_name}.{class_name}"),
        Object::Reduce { .. } => "a call".into(),
        Object::Build { .. } => "a built object".into(),
        _ => "another value".into(),
    }
}

/// The tensor `t` from its storage's bytes, as float32; `None` for the integer counters
/// PyTorch keeps beside weights (`num_batches_tracked`). Every element read is checked to
/// lie in the storage.
fn materialize(
    name: &str,
    t: &TensorRef,
    storage: &[u8],
) -> std::result::Result<Option<Tensor>, Fail> {
    let es = elem_size(&t.dtype)
        .ok_or_else(|| format!("{name}: storage type `{}` is not supported", t.dtype))?;
    let convert: fn(&[u8]) -> Option<f32> = match t.dtype.as_str() {
        "FloatStorage" => |b| Some(f32::from_le_bytes(b.try_into().ok()?)),
        "DoubleStorage" => |b| Some(f64::from_le_bytes(b.try_into().ok()?) as f32),
        "HalfStorage" => |b| Some(half::f16::from_le_bytes(b.try_into().ok()?).to_f32()),
        "BFloat16Storage" => |b| Some(half::bf16::from_le_bytes(b.try_into().ok()?).to_f32()),
        _ if name.ends_with("num_batches_tracked") => return Ok(None),
        other => {
            return Err(format!(
                "{name}: holds {} values; weights must be floating-point",
                other.trim_end_matches("Storage").to_lowercase()
            ))
        }
    };
    let count = storage.len() / es;
    if t.size.len() != t.stride.len() {
        return Err(format!("{name}: size and stride differ in length"));
    }
    // the largest element read must lie in the storage (checked, so no overflow)
    let out_of = || format!("{name}: reads past its storage (truncated or corrupt file)");
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(out_of)?;
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &st)| {
            a.checked_add(d.saturating_sub(1).checked_mul(st)?)
        })
        .ok_or_else(out_of)?;
    // (state dicts hold no broadcast tensors: more elements than the storage is damage)
    if numel > 0 && (last >= count || numel > count) {
        return Err(out_of());
    }
    // gather by strides (contiguous or not); every index is below `count` (checked above)
    let mut data = Vec::with_capacity(numel);
    let mut idx = vec![0usize; t.size.len()];
    for _ in 0..numel {
        let at = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        let v = storage
            .get(at * es..(at + 1) * es)
            .and_then(convert)
            .ok_or_else(out_of)?;
        data.push(v);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor::from_vec(data, t.size.clone(), &Device::Cpu)
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// Reads every floating-point tensor of a legacy `.pth` (a state dict, or a dict holding
/// one under `state_dict`), as float32 on the CPU.
pub fn read(bytes: &[u8]) -> std::result::Result<Vec<(String, Tensor)>, Fail> {
    if !is_legacy(bytes) {
        return Err("not a legacy PyTorch file (no magic number)".into());
    }
    let mut r = Cursor::new(&bytes[MAGIC.len()..]);
    let _protocol = pickle(&mut r, "protocol version")?;
    let _sys_info = pickle(&mut r, "system info")?;
    let refs = tensor_refs(pickle(&mut r, "the saved object")?)?;
    let keys = match pickle(&mut r, "storage keys")? {
        Object::List(v) | Object::Tuple(v) => v
            .into_iter()
            .map(|k| match k {
                Object::Unicode(s) => Ok(s),
                other => Err(format!("storage key {}", short_debug(&other))),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        other => return Err(format!("storage keys: {}", short_debug(&other))),
    };
    // each storage: element count, then the elements; their sizes come from the tensors
    let sizes: HashMap<&str, usize> = refs
        .iter()
        .filter_map(|(_, t)| Some((t.key.as_str(), elem_size(&t.dtype)?)))
        .collect();
    let data = &bytes[MAGIC.len()..];
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys {
        let mut n = [0u8; 8];
        r.read_exact(&mut n)
            .map_err(|_| format!("storage `{key}`: the file ends early (truncated?)"))?;
        let count = u64::from_le_bytes(n);
        let es = sizes.get(key.as_str()).copied().unwrap_or(4);
        let start = r.position() as usize;
        let slice = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(es))
            .and_then(|len| data.get(start..start.checked_add(len)?))
            .ok_or_else(|| format!("storage `{key}`: the file ends early (truncated?)"))?;
        storages.insert(key.clone(), slice);
        r.set_position((start + slice.len()) as u64);
    }
    let mut out = Vec::new();
    for (name, t) in refs {
        let storage = storages
            .get(&t.key)
            .ok_or_else(|| format!("{name}: storage `{}` is missing", t.key))?;
        if let Some(tensor) = materialize(&name, &t, storage)? {
            out.push((name, tensor));
        }
    }
    Ok(out)
}

/// Reads every floating-point tensor of a zip-format `.pth` (PyTorch >= 1.6), as float32
/// on the CPU. Storages are read one at a time, each after its size is checked against
/// the archive's.
pub fn read_zip<R: Read + Seek>(mut reader: R) -> std::result::Result<Vec<(String, Tensor)>, Fail> {
    let archive_len = reader
        .seek(std::io::SeekFrom::End(0))
        .map_err(|e| e.to_string())?;
    reader.rewind().map_err(|e| e.to_string())?;
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| format!("not a readable zip archive ({e})"))?;
    let pkl = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or("no data.pkl in the archive: not a PyTorch file")?;
    let root = pkl.trim_end_matches("data.pkl").to_string();
    let obj = {
        let mut entry = zip.by_name(&pkl).map_err(|e| format!("{pkl}: {e}"))?;
        let declared = entry.size();
        if declared > archive_len {
            return Err(format!("{pkl} says {declared} bytes, more than the file"));
        }
        let mut bytes = Vec::new();
        (&mut entry)
            .take(declared)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{pkl}: {e} (truncated?)"))?;
        pickle(&mut Cursor::new(&bytes[..]), &pkl)?
    };
    let refs = tensor_refs(obj)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (name, t) in refs {
        if !storages.contains_key(&t.key) {
            let entry_name = format!("{root}data/{}", t.key);
            let mut entry = zip
                .by_name(&entry_name)
                .map_err(|e| format!("{name}: storage `{entry_name}`: {e}"))?;
            let declared = entry.size();
            if declared > archive_len {
                return Err(format!(
                    "{name}: storage `{entry_name}` says {declared} bytes, more than the \
                     {archive_len}-byte file (truncated or corrupt)"
                ));
            }
            let mut bytes = Vec::new();
            bytes
                .try_reserve_exact(usize::try_from(declared).map_err(|_| "storage too large")?)
                .map_err(|_| {
                    format!(
                        "{name}: storage `{entry_name}` of {declared} bytes does not fit in memory"
                    )
                })?;
            (&mut entry)
                .take(declared)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{name}: storage `{entry_name}`: {e} (truncated?)"))?;
            if bytes.len() as u64 != declared {
                return Err(format!(
                    "{name}: storage `{entry_name}` ends early (truncated?)"
                ));
            }
            storages.insert(t.key.clone(), bytes);
        }
        if let Some(tensor) = materialize(&name, &t, &storages[&t.key])? {
            out.push((name, tensor));
        }
    }
    Ok(out)
}

/// The stack the pickle is read on: a crafted pickle nests as deep as it is long, and
/// building, describing and dropping its value tree recurse that deep.
const PICKLE_STACK: usize = 1 << 30;

/// `f` on a big stack, a panic in the unpickler (an integer op code with more than 8
/// bytes) an error.
fn guarded<T: Send>(
    f: impl FnOnce() -> std::result::Result<T, Fail> + Send,
) -> std::result::Result<T, Fail> {
    crate::panics::on_big_stack(PICKLE_STACK, f)
        .unwrap_or_else(|m| Err(format!("the pickle is malformed ({m})")))
}

/// For the weights reader: either format as [`crate::error::Error`]s.
pub fn read_file(path: &std::path::Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    guarded(|| read(bytes))
        .map_err(|m| crate::error::Error::weights(path, format!("legacy PyTorch .pth: {m}")))
}

/// A zip-format `.pth` file as [`crate::error::Error`]s.
pub fn read_zip_file(path: &std::path::Path) -> Result<Vec<(String, Tensor)>> {
    let f = std::fs::File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
    guarded(|| read_zip(std::io::BufReader::new(f)))
        .map_err(|m| crate::error::Error::weights(path, format!("PyTorch .pth: {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pickle of one string whose 4-byte length prefix says `len`, and `have` bytes.
    fn string_pickle(len: u32, have: usize) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'X'];
        p.extend_from_slice(&len.to_le_bytes());
        p.extend(std::iter::repeat_n(b'a', have));
        p.push(b'.');
        p
    }

    #[test]
    fn a_string_longer_than_its_pickle_is_refused_before_anything_is_allocated() {
        assert!(check_lengths(&string_pickle(3, 3)).is_ok());
        let e = check_lengths(&string_pickle(0xC000_0000, 3)).unwrap_err();
        assert!(e.contains("runs past the pickle"), "{e}");
        // the legacy reader says so for its first pickle (found by fuzzing: 3 GB asked for)
        let mut file = MAGIC.to_vec();
        file.extend(string_pickle(0xC000_0000, 3));
        let e = read(&file).unwrap_err();
        assert!(
            e.contains("protocol version") && e.contains("runs past"),
            "{e}"
        );
        // a GLOBAL without its newlines, a BININT cut short
        assert!(check_lengths(b"cx").is_err());
        assert!(check_lengths(&[b'J', 1, 2]).is_err());
    }
}
