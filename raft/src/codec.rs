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
/// Length prefixes inside may claim at most 256 MiB in total (store and trusted peers).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_limited::<T, { 256 * 1024 * 1024 }>(bytes)
}

/// Like `decode`, for untrusted input: claims are capped at 64 KiB, so a forged length
/// prefix cannot make us allocate more than that.
pub fn decode_small<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_limited::<T, { 64 * 1024 }>(bytes)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    // bincode checks each container's claimed size against the limit before allocating.
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    let (v, used) = bincode::serde::decode_from_slice(bytes, cfg)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_length_prefix_is_refused_before_allocation() {
        // A String claiming 100 MB (varint tag 252 + u32 LE) followed by nothing.
        let forged = [252u8, 0x00, 0xe1, 0xf5, 0x05];
        let err = decode_small::<String>(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Decode(bincode::error::DecodeError::LimitExceeded)
            ),
            "{err:?}"
        );
        assert!(decode::<String>(&forged).is_err());
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&7u64).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u64>(&bytes),
            Err(CodecError::Trailing(1))
        ));
    }
}
