//! Codec microbenchmarks: what one publication costs to encode for the
//! wire and what a command frame costs to decode, in both encodings.
//!
//! `cargo bench -p starling-bench --bench codec`

use bytes::Bytes;
use divan::{Bencher, black_box};
use starling_protocol::{
    Command, Encoding, Publication, PublishRequest, Push, Reply, decode_commands_limited,
    encode_command, encode_reply,
};

/// Both encodings, as divan arguments.
const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

/// Commands per frame the node accepts in the benchmarks' configuration.
const MAX_COMMANDS: usize = 64;

fn main() {
    divan::main();
}

/// A 100-byte JSON payload shaped like loadgen's stamped payloads.
fn payload() -> Bytes {
    let mut data = br#"{"t":1763900000123456789,"p":""#.to_vec();
    data.resize(100 - 2, b'x');
    data.extend_from_slice(br#""}"#);
    Bytes::from(data)
}

fn publication_push() -> Reply {
    Reply::push(Push::publication(
        "bench-0",
        Publication {
            data: payload(),
            offset: 4242,
            ..Publication::default()
        },
    ))
}

fn publish_command(id: u32) -> Command {
    Command {
        id,
        publish: Some(PublishRequest {
            channel: "bench-0".to_owned(),
            data: payload(),
        }),
        ..Command::default()
    }
}

/// One frame holding `count` publish commands.
fn publish_frame(encoding: Encoding, count: u32) -> Vec<u8> {
    let mut frame = Vec::new();
    for id in 1..=count {
        let command = encode_command(encoding, &publish_command(id)).expect("encodable command");
        if encoding == Encoding::Json && id > 1 {
            frame.push(b'\n');
        }
        frame.extend_from_slice(&command);
    }
    frame
}

/// A publication push with a 100-byte payload, encoded once per room
/// publication (the fan-out shares the bytes).
#[divan::bench(args = ENCODINGS)]
fn encode_publication_push(bencher: Bencher, encoding: Encoding) {
    let reply = publication_push();
    bencher.bench(|| encode_reply(encoding, black_box(&reply)));
}

/// The publish reply sent back to the publisher.
#[divan::bench(args = ENCODINGS)]
fn encode_publish_reply(bencher: Bencher, encoding: Encoding) {
    let reply = Reply {
        id: 7,
        publish: Some(starling_protocol::PublishResult {}),
        ..Reply::default()
    };
    bencher.bench(|| encode_reply(encoding, black_box(&reply)));
}

/// One frame with one publish command, as a client sends it.
#[divan::bench(args = ENCODINGS)]
fn decode_one_publish(bencher: Bencher, encoding: Encoding) {
    let frame = publish_frame(encoding, 1);
    bencher.bench(|| decode_commands_limited(encoding, black_box(&frame), MAX_COMMANDS));
}

/// One frame with 16 publish commands (a batching client), per command.
#[divan::bench(args = ENCODINGS)]
fn decode_16_publishes(bencher: Bencher, encoding: Encoding) {
    let frame = publish_frame(encoding, 16);
    bencher
        .counter(divan::counter::ItemsCount::new(16usize))
        .bench(|| decode_commands_limited(encoding, black_box(&frame), MAX_COMMANDS));
}
