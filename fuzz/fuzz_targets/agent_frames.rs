//! Fuzzes what the guest decodes from the host (and the host from the guest): the frame
//! decoder on arbitrary bytes in arbitrary chunks, then every payload as each message type.
//! Must never panic, loop forever, or buffer beyond the frame limit.

#![no_main]

use agent::frame::{Decoder, Kind};
use agent::server::Incoming;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (split, bytes) = match data.split_first() {
        Some((s, rest)) => (*s as usize + 1, rest),
        None => return,
    };
    let mut d = Decoder::new();
    match split % 3 {
        0 => d.sync_to(Kind::HelloAck),
        1 => d.watch_for(Kind::Hello),
        _ => {}
    }
    for chunk in bytes.chunks(split) {
        d.extend(chunk);
        // Each call consumes at least one byte or returns Ok(None): bounded by input size.
        for _ in 0..=bytes.len() {
            match d.next_frame() {
                Ok(Some(frame)) => {
                    let _ = frame.parse::<agent::Response>();
                    let _ = frame.parse::<agent::WireError>();
                    let _ = frame.parse::<agent::HelloAck>();
                    let _ = frame.credit();
                    let _ = Incoming::from_frame(frame);
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        assert!(d.pending() <= agent::frame::HEADER_LEN + agent::frame::MAX_PAYLOAD + bytes.len());
    }
});
