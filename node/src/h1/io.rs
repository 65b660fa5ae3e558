//! Writing a head and the first body bytes in one vectored write, so a small message
//! costs one system call.

use std::io::{self, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes `first` then `second` completely, vectored while both have bytes left, and
/// flushes (a no-op on TCP; TLS may hold back a record otherwise).
pub(super) async fn write_both<W>(w: &mut W, first: &[u8], second: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    write_all_both(w, first, second).await?;
    w.flush().await
}

async fn write_all_both<W>(w: &mut W, mut first: &[u8], mut second: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while !first.is_empty() {
        if second.is_empty() {
            return w.write_all(first).await;
        }
        let n = w
            .write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n >= first.len() {
            second = &second[n - first.len()..];
            first = &[];
        } else {
            first = &first[n..];
        }
    }
    w.write_all(second).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn write_both_writes_everything_in_order() {
        let (mut near, mut far) = tokio::io::duplex(7);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        write_both(&mut near, b"HTTP/1.1 200 OK\r\n\r\n", b"body bytes")
            .await
            .unwrap();
        write_both(&mut near, b"", b"tail").await.unwrap();
        drop(near);
        assert_eq!(
            reader.await.unwrap(),
            b"HTTP/1.1 200 OK\r\n\r\nbody bytestail"
        );
    }
}
