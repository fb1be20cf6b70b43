//! Decoding pprof profiles in tests: the crate's `profile.proto` types are
//! crate-private, so the tests compile their own copy of the generated file,
//! and the one gunzip-and-decode helper they share.
#![allow(dead_code)]

use std::io::Read;

use prost::Message;

#[path = "../../src/pprof/proto.rs"]
#[allow(unreachable_pub)]
pub mod proto;

/// Gunzips and decodes a profile as served (`/debug/pprof/heap`,
/// `pprof::profile`), checking the gzip magic first.
pub fn decode(gz: &[u8]) -> proto::Profile {
    assert_eq!(gz.get(..2), Some(&[0x1f, 0x8b][..]), "not gzip");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .expect("gunzip");
    proto::Profile::decode(raw.as_slice()).expect("decode profile.proto")
}
