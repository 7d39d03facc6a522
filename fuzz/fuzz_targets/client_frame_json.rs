//! Client frames in the JSON encoding: what a WebSocket, SSE or HTTP-streaming client sends
//! (`decode_commands`, and the node's bounded variant), and what the Rust client reads back
//! (`decode_replies`). Any input must give `Ok` or `Err`, never a panic or a hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_protocol::{Encoding, decode_commands, decode_commands_limited, decode_replies};

/// The node's limit on commands per frame.
const MAX_COMMANDS: usize = 256;

fuzz_target!(|frame: &[u8]| {
    let _ = decode_commands(Encoding::Json, frame);
    let _ = decode_commands_limited(Encoding::Json, frame, MAX_COMMANDS);
    let _ = decode_replies(Encoding::Json, frame);
});
