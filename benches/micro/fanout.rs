//! Fan-out inside one room: a publication is encoded once and the same
//! `Bytes` (a reference-counted clone, no copy) goes into every
//! subscriber's [`Outbound`] queue; each connection's writer then takes its
//! queue. The baseline encodes the publication once per subscriber, which
//! is what sharing saves.
//!
//! `cargo bench -p starling-bench --bench fanout`

use bytes::Bytes;
use divan::{Bencher, black_box};
use futures_util::FutureExt;
use starling_node::Outbound;
use starling_protocol::{Encoding, Publication, Push, Reply, encode_reply};

/// Subscribers of the room.
const SUBSCRIBERS: [usize; 3] = [100, 1_000, 5_000];

/// The benchmark node's `client.queue_max_size` (benches/starling-bench.toml).
const QUEUE_BYTES: usize = 4 * 1024 * 1024;

fn main() {
    divan::main();
}

fn publication_push() -> Reply {
    let mut data = br#"{"t":1763900000123456789,"p":""#.to_vec();
    data.resize(98, b'x');
    data.extend_from_slice(br#""}"#);
    Reply::push(Push::publication(
        "bench-0",
        Publication {
            data: Bytes::from(data),
            offset: 4242,
            ..Publication::default()
        },
    ))
}

/// `n` released, empty queues, as connected subscribers hold them.
fn queues(n: usize) -> Vec<Outbound> {
    (0..n)
        .map(|_| {
            let queue = Outbound::new(QUEUE_BYTES);
            queue.release(Bytes::new());
            // Take the (empty) connect reply so every queue starts empty.
            let _ = queue.next_batch().now_or_never();
            queue
        })
        .collect()
}

/// Takes every queue's frames the way each connection's writer would.
fn drain(queues: &[Outbound]) {
    for queue in queues {
        black_box(queue.next_batch().now_or_never());
    }
}

/// Encode once, push a clone of the bytes to every subscriber, then let
/// every writer take its batch. Counted per delivery.
#[divan::bench(args = SUBSCRIBERS)]
fn encode_once_push_shared(bencher: Bencher, subscribers: usize) {
    let queues = queues(subscribers);
    let reply = publication_push();
    bencher
        .counter(divan::counter::ItemsCount::new(subscribers))
        .bench_local(|| {
            let frame = encode_reply(Encoding::Json, black_box(&reply)).expect("encodable");
            for queue in &queues {
                let _ = queue.push(frame.clone());
            }
            drain(&queues);
        });
}

/// The baseline: encode the publication again for every subscriber.
#[divan::bench(args = SUBSCRIBERS)]
fn encode_per_subscriber(bencher: Bencher, subscribers: usize) {
    let queues = queues(subscribers);
    let reply = publication_push();
    bencher
        .counter(divan::counter::ItemsCount::new(subscribers))
        .bench_local(|| {
            for queue in &queues {
                let frame = encode_reply(Encoding::Json, black_box(&reply)).expect("encodable");
                let _ = queue.push(frame);
            }
            drain(&queues);
        });
}
