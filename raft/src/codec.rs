//! bincode 2 (serde mode, standard config) helpers shared by the store and the wire.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
}

/// Serialize `v` with bincode's standard config.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(
        v,
        bincode::config::standard(),
    )?)
}

/// Deserialize a whole buffer; trailing garbage is an error (a sign of corruption).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    // Limit allocations driven by length prefixes to the buffer's own size class, so a
    // malicious length cannot make us allocate gigabytes.
    let cfg = bincode::config::standard().with_limit::<{ 256 * 1024 * 1024 }>();
    let (v, used) = bincode::serde::decode_from_slice(bytes, cfg)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(v)
}
