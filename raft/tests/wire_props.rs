//! Property tests of what a Raft peer reads from the network (issue 17 item 4): the
//! frame reader, the message decoder and the authentication handshake take arbitrary
//! bytes and answer with an error, never a panic, never an allocation the length
//! prefix asked for but the bytes did not bring, and never a hang.
//! `PROPTEST_CASES` sets how many cases run (the README's long run: a million).

use fulcrum_raft::auth::server_handshake;
use fulcrum_raft::codec::{decode, decode_small};
use fulcrum_raft::frame::{read_frame, FrameError, MAX_FRAME, MAX_HANDSHAKE_FRAME};
use fulcrum_raft::rpc::{PeerRequest, PeerResponse};
use proptest::prelude::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #[test]
    fn any_message_bytes_decode_to_an_error_or_a_message(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode::<PeerRequest>(&bytes);
        let _ = decode::<PeerResponse>(&bytes);
        let _ = decode_small::<PeerRequest>(&bytes);
    }

    #[test]
    fn a_frame_longer_than_allowed_is_refused_before_its_body(len in (MAX_HANDSHAKE_FRAME as u32 + 1)..u32::MAX) {
        let rt = runtime();
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend([0u8; 16]);
        let got = rt.block_on(read_frame(&mut bytes.as_slice(), MAX_HANDSHAKE_FRAME));
        prop_assert!(
            matches!(got, Err(FrameError::TooLarge { .. })),
            "len {} accepted: {:?}", len, got.map(|b| b.len())
        );
    }

    #[test]
    fn a_frame_promising_more_than_it_brings_is_an_error(len in 1u32..(MAX_FRAME as u32), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assume!((body.len() as u64) < u64::from(len));
        let rt = runtime();
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend(&body);
        let got = rt.block_on(read_frame(&mut bytes.as_slice(), MAX_FRAME));
        prop_assert!(got.is_err());
    }

    #[test]
    fn a_handshake_of_arbitrary_bytes_fails_in_bounded_time(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        let outcome = rt.block_on(async {
            let (mut peer, mut ours) = tokio::io::duplex(4096);
            peer.write_all(&bytes).await.ok();
            // The peer then goes quiet and closes: the server must give up, not wait.
            drop(peer);
            tokio::time::timeout(
                Duration::from_secs(5),
                server_handshake(&mut ours, b"0123456789abcdef0123456789abcdef"),
            )
            .await
        });
        prop_assert!(matches!(outcome, Ok(Err(_))), "handshake did not fail in time: {:?}", outcome.map(|r| r.is_ok()));
    }
}
