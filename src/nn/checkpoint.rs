//! The checkpoint layout every built-in network shares: `VPDCKPT1`, the
//! header length (u64, big-endian), a JSON header (the network's metadata,
//! with at least `kind`), then the libtorch archive of the weights.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::nn;

use super::NnError;

const MAGIC: &[u8; 8] = b"VPDCKPT1";

/// Header and weights as one blob. The weights are written in name order,
/// so that equal weights make equal bytes (the VarStore's own order is a
/// hash map's), and from CPU copies, so that a checkpoint written on a GPU
/// loads anywhere.
pub fn pack(meta: &impl Serialize, vs: &nn::VarStore) -> Result<Vec<u8>, NnError> {
    let header = serde_json::to_vec(meta).expect("meta serialises");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(header.len() as u64).to_be_bytes());
    out.extend_from_slice(&header);
    let mut named: Vec<(String, tch::Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.to_device(tch::Device::Cpu)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    tch::Tensor::save_multi_to_stream(&named, &mut out)?;
    Ok(out)
}

/// Header and an opaque payload (a TorchScript archive) as one blob.
pub fn pack_bytes(meta: &impl Serialize, payload: &[u8]) -> Result<Vec<u8>, NnError> {
    let header = serde_json::to_vec(meta).expect("meta serialises");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(header.len() as u64).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(out)
}

fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), NnError> {
    let bad = |m: &str| NnError::Checkpoint(m.to_string());
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad("not a vpd checkpoint (bad magic)"));
    }
    let n = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let end = 16usize
        .checked_add(n)
        .ok_or_else(|| bad("truncated header"))?;
    let header = bytes.get(16..end).ok_or_else(|| bad("truncated header"))?;
    Ok((header, &bytes[end..]))
}

/// The header as `T` and the weights' bytes.
pub fn unpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), NnError> {
    let (header, weights) = split(bytes)?;
    let meta =
        serde_json::from_slice(header).map_err(|e| NnError::Checkpoint(format!("header: {e}")))?;
    Ok((meta, weights))
}

/// The `kind` a checkpoint declares (`vqa-student`, `loc-student`,
/// `gqa-teacher`, `nlvr2-teacher`).
pub fn kind_of(bytes: &[u8]) -> Result<crate::vocab::ModelKind, NnError> {
    #[derive(serde::Deserialize)]
    struct K {
        kind: crate::vocab::ModelKind,
    }
    let (k, _): (K, _) = unpack(bytes)?;
    Ok(k.kind)
}
